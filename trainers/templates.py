"""Text templates for zero-shot classification and for PromptSRC's fixed text embeddings.

Values are upstream's (CoOp's ``trainers/zsclip.py`` and ``imagenet_templates.py``): one hand-written template per
dataset (``CUSTOM_TEMPLATES``, keyed by ``DATASET.NAME``), the 60-entry ImageNet ensemble (``IMAGENET_TEMPLATES``, the
upstream list, which is shorter than CLIP's 80) and the 7-entry selection used by ZeroshotCLIP2
(``IMAGENET_TEMPLATES_SELECT``).

All collections are immutable (tuples / a read-only mapping) so that no trainer can change them for another
one (upstream ZeroshotCLIP2 appended to the shared list).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["CUSTOM_TEMPLATES", "IMAGENET_TEMPLATES", "IMAGENET_TEMPLATES_SELECT", "custom_template"]

CUSTOM_TEMPLATES: MappingProxyType[str, str] = MappingProxyType(
    {
        "OxfordPets": "a photo of a {}, a type of pet.",
        "OxfordFlowers": "a photo of a {}, a type of flower.",
        "FGVCAircraft": "a photo of a {}, a type of aircraft.",
        "DescribableTextures": "{} texture.",
        "EuroSAT": "a centered satellite photo of {}.",
        "StanfordCars": "a photo of a {}.",
        "Food101": "a photo of {}, a type of food.",
        "SUN397": "a photo of a {}.",
        "Caltech101": "a photo of a {}.",
        "Folder": "a photo of a {}.",
        "UCF101": "a photo of a person doing {}.",
        "ImageNet": "a photo of a {}.",
        "ImageNetSketch": "a photo of a {}.",
        "ImageNetV2": "a photo of a {}.",
        "ImageNetA": "a photo of a {}.",
        "ImageNetR": "a photo of a {}.",
    }
)

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)

IMAGENET_TEMPLATES_SELECT: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def custom_template(dataset_name: str) -> str:
    """Return the hand-written template of ``DATASET.NAME``; unknown names raise with the known ones listed."""
    try:
        return CUSTOM_TEMPLATES[dataset_name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(dataset_name, list(CUSTOM_TEMPLATES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"No zero-shot template for DATASET.NAME={dataset_name!r}; known names: {sorted(CUSTOM_TEMPLATES)}."
            f"{hint} Add a template to trainers/templates.py CUSTOM_TEMPLATES for a new dataset."
        ) from None
