"""The web container's health check: GET /healthz from inside the container.

It asks with a Host header the site accepts (the first of ALLOWED_HOSTS), so
that Django's host check passes as it does for real visitors; /healthz is
exempt from the HTTPS redirect (settings.SECURE_REDIRECT_EXEMPT), so plain
HTTP on the loopback answers. Exit status 0 when the site and its database
answer, 1 otherwise. Standard library only: it runs in a few milliseconds.

    python labplatform/ops/healthcheck.py [port]
"""

from __future__ import annotations

import http.client
import os
import sys


def host_header(allowed_hosts: str) -> str:
    """A name the site serves: the first entry of ALLOWED_HOSTS, made concrete
    (".example.org" allows example.org and its subdomains; "*" allows any)."""
    first = next((h.strip() for h in allowed_hosts.split(",") if h.strip()), "localhost")
    if first == "*":
        return "localhost"
    return first.lstrip(".")


def check(port: int) -> str | None:
    """None when healthy, otherwise what went wrong."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        connection.request(
            "GET", "/healthz", headers={"Host": host_header(os.environ.get("ALLOWED_HOSTS", ""))}
        )
        response = connection.getresponse()
        body = response.read(200)
    except OSError as exc:
        return f"no answer on port {port}: {exc}"
    finally:
        connection.close()
    if response.status != 200:
        return f"/healthz answered {response.status}: {body!r}"
    return None


def main(argv: list[str]) -> int:
    problem = check(int(argv[1]) if len(argv) > 1 else 8000)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
