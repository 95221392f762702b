"""People, their enrolment examples, and the known faces new faces are recognised against.

The *gallery* is every example a user enrolled and every indexed face a user confirmed
(named its cluster, assigned it); recognition (:mod:`lookalike.people.recognise`) compares
faces with it. Names are kept as typed and compared caseless in every script (the store's
:func:`~lookalike.store.base.person_key`): "Élodie" and "ÉLODIE" are one person.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from lookalike.decode import read_file, sha256_hex
from lookalike.errors import BadInput, Conflict, NotFound
from lookalike.faces.api import choose_face
from lookalike.faces.read import NamedBytes, Source, decode_for_faces, find_faces, source_label
from lookalike.people.scan import chip_image, face_record
from lookalike.settings import Settings
from lookalike.store.base import ExampleRow, FaceRow, FaceStore, FaceVectors, NewExample, PersonRow

__all__ = ["MAX_NAME", "Gallery", "clean_name"]

# Longest person name, in characters.
MAX_NAME = 200


def clean_name(name: str) -> str:
    """``name`` with its runs of white space made one space; BadInput if it is empty, too
    long or holds control or invisible characters."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise BadInput("a person's name cannot be empty")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in cleaned):
        raise BadInput("a person's name cannot hold control or invisible characters")
    if len(cleaned) > MAX_NAME:
        raise BadInput(f"a person's name must be at most {MAX_NAME} characters")
    return cleaned


class Gallery:
    """The people of a data folder and their examples; the known faces, cached."""

    def __init__(self, settings: Settings, store: FaceStore, version: str) -> None:
        self.settings = settings
        self.store = store
        self.version = version
        self._known: tuple[int, FaceVectors] | None = None
        self._lock = threading.Lock()

    def person(self, name: str) -> PersonRow:
        """The person called ``name`` (any case); NotFound if there is none."""
        found = self.store.person(name)
        if found is None:
            raise NotFound(f"no person named {name!r}")
        return found

    def people(self) -> list[PersonRow]:
        """Everyone, by name."""
        return self.store.people()

    def person_named(self, name: str) -> PersonRow:
        """The person called ``name`` (cleaned), created if new."""
        return self.store.add_person(clean_name(name), exist_ok=True)

    def enrol(
        self,
        name: str,
        images: Sequence[Source],
        *,
        face: int | None = None,
        crop: bool = False,
    ) -> tuple[PersonRow, list[int]]:
        """Add example faces of ``name`` (created if new); returns it and the example ids.

        Every image must hold exactly one usable face, or ``face`` picks one (its position
        as ``faces detect`` lists them, from 0). Nothing is stored unless all images pass.
        """
        name = clean_name(name)
        if not images:
            raise BadInput("give at least one image of the person")
        examples = [self._example(query, face, crop) for query in images]
        person = self.store.add_person(name, exist_ok=True)
        ids = self.store.add_examples(person.id, examples)
        return self.person(person.name), ids

    def _example(self, query: Source, face: int | None, crop: bool) -> NewExample:
        """One image's chosen face as an example, keyed by the image's SHA-256."""
        label = source_label(query)
        source = label
        if isinstance(query, str | Path):
            source = os.path.abspath(os.fspath(query))
            query = NamedBytes(read_file(Path(query)), label)  # read once: decoded and hashed
        decoded = decode_for_faces(query, self.settings)
        found = find_faces(decoded, self.settings, crop=crop)
        chosen = choose_face(found, face, label)
        if isinstance(query, Image.Image):
            image = decoded.image
            sha = sha256_hex(image.tobytes() + f"{image.size}{image.mode}".encode())
        else:
            sha = sha256_hex(query.data if isinstance(query, NamedBytes) else query)
        return NewExample(sha, found.index(chosen), source, self.version, face_record(chosen))

    def rename(self, name: str, new_name: str) -> PersonRow:
        """Rename a person; Conflict if ``new_name`` is someone else's."""
        person = self.person(name)
        new_name = clean_name(new_name)
        other = self.store.person(new_name)
        if other is not None and other.id != person.id:
            raise Conflict(
                f"a person named {other.name!r} exists already: use `people merge` to make them one"
            )
        self.store.rename_person(person.id, new_name)
        return self.person(new_name)

    def merge(self, names: Sequence[str], into: str) -> PersonRow:
        """Make the people ``names`` one with ``into`` (their faces and examples move)."""
        target = self.person(into)
        others = [self.person(n).id for n in names]
        self.store.merge_people(target.id, [p for p in others if p != target.id])
        return self.person(target.name)

    def remove(self, name: str) -> None:
        """Forget a person: examples deleted, their faces become unknown again."""
        self.store.remove_person(self.person(name).id)

    def remove_example(self, name: str, example_id: int) -> None:
        """Delete one of a person's examples; NotFound if it is not theirs."""
        person = self.person(name)
        if not self.store.remove_example(person.id, example_id):
            raise NotFound(f"{person.name} has no example {example_id}")

    def examples(self, name: str) -> list[ExampleRow]:
        """A person's enrolment examples, oldest first."""
        return self.store.examples(self.person(name).id)

    def faces_of_person(self, name: str) -> list[FaceRow]:
        """A person's indexed faces (confirmed and recognised), best quality first."""
        return self.store.faces_of_person(self.person(name).id)

    def assign(self, face_ids: Sequence[int], name: str) -> PersonRow:
        """Confirm indexed faces as ``name`` (created if new): they join its gallery."""
        person = self.person_named(name)
        self.store.set_person(face_ids, person.id, confirmed=True)
        return self.person(person.name)

    def example_thumbnail(self, example_id: int) -> Image.Image:
        """The aligned chip of an example."""
        return chip_image(self.store.example_thumb(example_id), f"example {example_id} not found")

    def known(self) -> FaceVectors:
        """The known faces (examples and confirmed faces, labelled by person id), cached
        until they change."""
        generation = self.store.generation("gallery")
        with self._lock:
            if self._known is None or self._known[0] != generation:
                self._known = (generation, self.store.gallery(self.version))
            return self._known[1]
