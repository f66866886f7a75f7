"""Class names and superclasses of every image set, importable without loading an image.

Config code generates task families from these (``digits-<d>``, ``fashion-<class>``,
``fashion-<superclass>``, ``cifar20-<superclass>``); the loaders label their images with the
same constants, so names cannot drift between a task and its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from modularity.errors import invalid_choice

DIGIT_CLASSES = tuple(str(d) for d in range(10))

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The Fashion-MNIST analogue of CIFAR-100's superclasses: superclass -> fine class ids.
FASHION_MNIST_SUPERCLASSES: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "tops": (0, 2, 4, 6),
        "bottoms": (1,),
        "dresses": (3,),
        "footwear": (5, 7, 9),
        "bags": (8,),
    }
)

# CIFAR-100's 20 coarse labels in label-id order (hub only: the tasks label by coarse label).
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)


@dataclass(frozen=True)
class ImageClasses:
    """The labels of one image set: class names in label-id order, and superclass name ->
    fine class ids (empty when the set has no natural grouping)."""

    class_names: tuple[str, ...]
    superclasses: Mapping[str, tuple[int, ...]]


IMAGE_CLASSES: Mapping[str, ImageClasses] = MappingProxyType(
    {
        "digits": ImageClasses(DIGIT_CLASSES, MappingProxyType({})),
        "fashion_mnist": ImageClasses(FASHION_MNIST_CLASSES, FASHION_MNIST_SUPERCLASSES),
        "cifar100": ImageClasses(CIFAR100_SUPERCLASSES, MappingProxyType({})),
    }
)


def image_classes(name: str) -> ImageClasses:
    """The labels of image set ``name`` (``digits``, ``fashion_mnist``, ``cifar100``)."""
    try:
        return IMAGE_CLASSES[name]
    except KeyError:
        raise invalid_choice("image set", name, IMAGE_CLASSES) from None
