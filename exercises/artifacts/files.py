"""One file of a Submit, as the host sees it after sanitising."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # absolute guest path, e.g. "/etc/sysctl.d/60-kernellab.conf"
    data: bytes
    executable: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")
