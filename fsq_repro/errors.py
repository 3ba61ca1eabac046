"""One exception type for user-facing configuration and input errors.

Entry points catch ``ConfigError`` and print its message as a single ``error: ...`` line (exit code 2) instead of a
traceback: the message always names the config key to set and what it expects.
"""


class ConfigError(ValueError):
    """A configuration or input problem the user can fix; the message names the key and the expected value."""


def first_line(err: BaseException, width: int = 160) -> str:
    """The first line of ``err``'s message (at most ``width`` characters), or its type's name when it has none: what
    a one-line error quotes of the exception that caused it."""
    lines = str(err).strip().splitlines()
    return lines[0][:width] if lines else type(err).__name__


# what a collective reports when another process of the job died or stopped answering (gloo: the closed TCP
# connection, at once; NCCL: the watchdog, after the process group's timeout)
PEER_FAILURE_MARKS = ("Connection reset by peer", "Connection closed by peer", "gloo/transport", "NCCL error",
                      "Watchdog caught collective operation timeout")  # fmt: skip


def peer_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from or during) is a distributed collective failing because
    a peer process died or hangs — not a bug of this process, and not worth a checkpoint that needs the peers."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if kinds & {"DistError", "DistBackendError", "DistNetworkError"}:
            return True
        if isinstance(exc, RuntimeError) and any(mark in str(exc) for mark in PEER_FAILURE_MARKS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
