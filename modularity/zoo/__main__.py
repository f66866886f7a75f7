"""``python -m modularity.zoo recipe=<name>``: see ``modularity.zoo.cli``."""

from modularity.zoo.cli import main

if __name__ == "__main__":
    main()
