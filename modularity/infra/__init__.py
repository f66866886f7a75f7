"""Infrastructure the science runs on: the statistics cache and derived cache versions,
atomic writes and checked artefacts, hub access, paths, console output, loggers, Trainers,
config validation, sweep expansion and checks, interrupts, optional imports, completion."""
