"""What goes into a guest from an exercise version's bundle."""

from __future__ import annotations

import io
import tarfile

from exercises.manifest import Mode
from exercises.models import ExerciseVersion

# The checker library reads the nonce from this file and deletes it (it must
# match exercises/checklib/kernellab_check.py's NONCE_FILE).
NONCE_FILE = ".kernellab-nonce"


def _retar(bundle: bytes, mapping: dict[str, str], extra: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz of the bundle's members under the prefixes in ``mapping``
    (old prefix -> new prefix, "" for the top), everything else left out,
    plus the ``extra`` files (name -> content, mode 0600)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            for old, new in mapping.items():
                if member.name == old.rstrip("/") or member.name.startswith(old):
                    rest = member.name[len(old) :].lstrip("/")
                    name = f"{new}{rest}".rstrip("/")
                    if not name:
                        break
                    member.name = name
                    data = source.extractfile(member) if member.isfile() else None
                    target.addfile(member, data)
                    break
        for name, content in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o600
            target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def checker_payload(version: ExerciseVersion, *, mode: Mode) -> bytes:
    """What goes into the guest for one run: check/ at the top, and hidden/
    next to check.py only at Submit (hidden tests never reach a student's
    guest). The runner adds the nonce (with_nonce)."""
    mapping = {"check/": ""}
    if mode == "submit":
        mapping["hidden/"] = "hidden/"
    return _retar(bytes(version.bundle), mapping)


def with_nonce(payload: bytes, nonce: str) -> bytes:
    """A checker payload (as checker_payload makes it) with the nonce file added."""
    return _retar(payload, {"": ""}, {NONCE_FILE: nonce.encode()})


def starter_payload(version: ExerciseVersion) -> bytes:
    return _retar(bytes(version.bundle), {"starter/": ""})
