"""Files and folders only their owner can read: recordings, recorder logs, their folders.

A recording holds a patient's physiology and every stimulation decision, so stimloop
creates it, its folder and its log readable by the operator alone (files 0600, folders
0700), whatever the process's umask: with ``umask 000`` Python's defaults would give
0666 files and 0777 folders. The modes are applied explicitly (``fchmod``/``chmod``
after creation), because the creation mode is only an upper bound that the umask may
lower further, and a pre-existing file is brought to the mode too.

Writing into a path that someone else prepared is refused rather than followed: a
symbolic link, a file owned by another user, or something that is not a regular file
(a FIFO would block the writer, a device would receive the recording). In a shared
folder such as ``/tmp`` these are how another local user redirects a recording.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import IO, Any

from stimloop.stream.errors import StreamError

PRIVATE_FILE_MODE = 0o600  # owner read/write
PRIVATE_DIR_MODE = 0o700  # owner read/write/search


class PrivateFileError(StreamError):
    """A private file or folder cannot be created; the message names the path and why."""


def make_private_dir(path: str | os.PathLike, mode: int = PRIVATE_DIR_MODE) -> Path:
    """Create a folder and any missing parents, each with exactly ``mode``.

    Folders that already exist are left as they are: they belong to the user (a home
    folder, a lab share) and changing their mode is not ours to do.

    Parameters
    ----------
    path : str or path-like
        The folder.
    mode : int
        Permission bits of every folder created (default 0o700), applied whatever the
        umask.

    Returns
    -------
    Path
        The folder, absolute.

    Raises
    ------
    PrivateFileError
        A component exists and is not a folder, or the OS refuses (permissions,
        read-only file system); the message names the path.
    """
    target = Path(path).absolute()
    missing = []
    p = target
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise PrivateFileError(f"cannot create folder {str(target)!r}: {str(p)!r} is not a folder")
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)  # the umask can only remove bits, so never wider than mode
        except FileExistsError:
            if not d.is_dir():
                raise PrivateFileError(
                    f"cannot create folder {str(target)!r}: {str(d)!r} is not a folder"
                ) from None
            continue  # created meanwhile by someone else: not ours to change
        except OSError as exc:
            raise PrivateFileError(
                f"cannot create folder {str(d)!r}: {exc.strerror or exc}"
            ) from exc
        os.chmod(d, mode)  # restore bits the umask removed
    return target


def open_private_fd(
    path: str | os.PathLike, *, append: bool = False, exclusive: bool = False,
    mode: int = PRIVATE_FILE_MODE,
) -> int:  # fmt: skip
    """Open a file for writing as a raw descriptor with exactly ``mode``.

    The file is created if missing; an existing one is truncated (unless ``append``)
    and brought to ``mode``. The parent folder must exist (see
    :func:`make_private_dir`).

    Parameters
    ----------
    path : str or path-like
        The file.
    append : bool
        Append to an existing file instead of truncating it.
    exclusive : bool
        Refuse an existing file (``O_EXCL``).
    mode : int
        Permission bits (default 0o600), applied whatever the umask.

    Returns
    -------
    int
        A descriptor open for writing (``O_WRONLY``, close-on-exec); the caller closes it.

    Raises
    ------
    PrivateFileError
        The path is a symbolic link, not a regular file, owned by another user, or the
        OS refuses (missing folder, permissions, read-only file system).
    """
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    flags |= os.O_APPEND if append else 0
    flags |= os.O_EXCL if exclusive else 0
    try:
        fd = os.open(p, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link; stimloop writes only to a file it owns"
        elif exc.errno == errno.ENXIO:
            why = "it is a FIFO or socket, not a regular file"
        elif exc.errno == errno.EEXIST and exclusive:
            why = "it already exists (nothing was overwritten); choose another path"
        else:
            why = exc.strerror or str(exc)
        raise PrivateFileError(f"cannot write {str(p)!r}: {why}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PrivateFileError(f"cannot write {str(p)!r}: it is not a regular file")
        if st.st_uid != os.geteuid():
            raise PrivateFileError(
                f"cannot write {str(p)!r}: it belongs to uid {st.st_uid}, not to this user "
                f"(uid {os.geteuid()}); remove it or choose another path"
            )
        # Clear O_NONBLOCK again (it only kept a FIFO from blocking the open) and
        # truncate only now that the file is known to be ours.
        os.set_blocking(fd, True)
        if not append:
            os.ftruncate(fd, 0)
        os.fchmod(fd, mode)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise PrivateFileError(f"cannot write {str(p)!r}: {exc.strerror or exc}") from exc
        raise
    return fd


def open_private(
    path: str | os.PathLike, mode: str = "w", *, file_mode: int = PRIVATE_FILE_MODE,
    encoding: str | None = "utf-8", **kwargs: Any,
) -> IO:  # fmt: skip
    """:func:`open` for writing, creating the file with exactly ``file_mode``.

    Parameters
    ----------
    path : str or path-like
        The file; its folder must exist (see :func:`make_private_dir`).
    mode : str
        ``"w"`` (truncate), ``"a"`` (append) or ``"x"`` (must not exist), optionally
        with ``"b"`` for binary. No reading modes: these files are only written here.
    file_mode : int
        Permission bits (default 0o600), applied whatever the umask.
    encoding : str or None
        Text encoding (ignored in binary mode).
    **kwargs
        Passed to :func:`os.fdopen` (``buffering``, ``newline`` …).

    Returns
    -------
    file object
        Open for writing; use it as a context manager. It can be handed to
        ``subprocess.Popen(stdout=...)``.

    Raises
    ------
    PrivateFileError
        As :func:`open_private_fd`, or an unsupported ``mode``.
    """
    kind = mode.replace("b", "").replace("t", "")
    if kind not in ("w", "a", "x") or ("b" in mode and "t" in mode):
        raise PrivateFileError(f"open_private mode must be 'w', 'a' or 'x' (+ 'b'), got {mode!r}")
    fd = open_private_fd(path, append=kind == "a", exclusive=kind == "x", mode=file_mode)
    try:
        if "b" in mode:
            return os.fdopen(fd, mode, **kwargs)
        return os.fdopen(fd, mode, encoding=encoding, **kwargs)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
