"""JSON forms of faces, people, examples and clusters: one shape for the CLI and the server."""

from __future__ import annotations

from typing import Any

from lookalike.faces import Face
from lookalike.files import shown
from lookalike.store.base import ClusterRow, ExampleRow, FaceRow, PersonRow

__all__ = ["cluster_json", "example_json", "face_json", "face_row_json", "person_json"]


def face_json(face: Face, *, embedding: bool = False) -> dict[str, Any]:
    """A detected face (``embedding`` adds the 128 floats)."""
    out: dict[str, Any] = {
        "box": list(face.box),
        "score": round(face.score, 4),
        "quality": round(face.quality, 4),
        "usable": face.usable,
        "flags": face.flags,
        "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
    }
    if embedding and face.embedding is not None:
        out["embedding"] = [round(float(v), 6) for v in face.embedding]
    return out


def person_json(person: PersonRow) -> dict[str, Any]:
    """A person with their numbers of examples and faces."""
    return {
        "id": person.id,
        "name": person.name,
        "examples": person.examples,
        "faces": person.faces,
    }


def example_json(example: ExampleRow) -> dict[str, Any]:
    """An enrolment example: where it came from and the face taken from it."""
    return {
        "id": example.id,
        "source": example.source,
        "sha256": example.sha256,
        "face": example.face_index,
        "box": list(example.box),
        "quality": round(example.quality, 4),
    }


def face_row_json(face: FaceRow) -> dict[str, Any]:
    """An indexed face: its photo, box, and who or which cluster it is."""
    return {
        "id": face.id,
        "path": shown(face.path),
        "face": face.idx,
        "box": list(face.box),
        "quality": round(face.quality, 4),
        "usable": face.usable,
        "person": face.person,
        "confirmed": face.confirmed,
        "cluster": face.cluster_id,
    }


def cluster_json(cluster: ClusterRow) -> dict[str, Any]:
    """A cluster: its size and a sample of its face ids, best quality first."""
    return {"id": cluster.id, "size": cluster.size, "sample": list(cluster.sample)}
