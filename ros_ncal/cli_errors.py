"""What `ncal` says when a command fails: user errors in one line (exit 2), internal errors with a hint.

* :class:`UserError`: raised by commands for a problem the user can fix (bad argument, unusable output).
* :func:`ensure_writable`: an output path is checked (a real probe write, not permission bits: this also
  catches a read-only file system, a path under a regular file and a full disk) before any work starts.
* :func:`classify`: an exception -> ``(exit code, one line)``. User errors (exit 2) are the ones a
  user's file, argument or disk causes: ValueError (configs: unknown key / wrong type, corrupt checkpoints,
  unsafe pickles, malformed data), file system errors (missing, unreadable, not a directory, disk full,
  read-only), YAML syntax errors, unreadable bags. Anything else is an internal error (exit 1) whose line
  ends with a hint to rerun with ``--debug`` for the traceback.

No torch, no ROS: imported by the CLI before any command runs.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
PROBE_BYTES = 4096      # written (and removed) by ensure_writable: an empty file would pass on a full disk

# errnos that mean "your file system / your path", not "our bug"
USER_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS,
               errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EIO, errno.ELOOP, errno.EMFILE,
               errno.ENXIO, errno.ENODEV}
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
MAX_LINE = 600


class UserError(Exception):
    """A problem the user can fix; its message is printed as is (one line), exit code 2."""


def ensure_writable(path: str | Path, label: str | None = None) -> Path:
    """Check that ``path`` (a file or a folder, existing or to be created) can be written; return it.

    An existing folder gets a probe file written into it and removed; an existing file is opened for
    appending (not modified); a path that does not exist yet needs its nearest existing ancestor to be a
    writable folder (probed the same way). Nothing is created. Raises UserError naming ``label`` (e.g.
    '--out') and the path.
    """
    p = Path(path).expanduser()
    name = f'{label} {path}' if label else str(path)
    if p.exists():
        if p.is_dir():
            _probe_dir(p, name)
        else:
            try:
                with open(p, 'ab'):
                    pass
            except OSError as exc:
                raise UserError(f'{name}: cannot write this file ({exc.strerror or exc})') from exc
        return p
    anc = p.absolute().parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f'{name}: cannot be created: {anc} is not a directory')
    _probe_dir(anc, name)
    return p


def _probe_dir(d: Path, name: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix='.ncal-write-check-', dir=str(d))
    except OSError as exc:
        raise UserError(f'{name}: not writable ({d}: {exc.strerror or exc})') from exc
    try:
        try:
            os.write(fd, b'\0' * PROBE_BYTES)
        except OSError as exc:
            why = 'disk full' if exc.errno in DISK_FULL_ERRNOS else (exc.strerror or str(exc))
            raise UserError(f'{name}: not writable ({d}: {why})') from exc
    finally:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _one_line(text: str) -> str:
    line = ' '.join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + '...'


def _is_user_exception(exc: BaseException) -> bool:
    if isinstance(exc, (UserError, ValueError)):    # configs, checkpoints, pickles, data: all raise ValueError
        return True
    if isinstance(exc, OSError):
        return exc.errno in USER_ERRNOS or isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError,
                                                             IsADirectoryError, FileExistsError))
    mod = type(exc).__module__ or ''
    if mod.startswith('yaml'):                       # yaml.YAMLError and its subclasses
        return True
    if mod.startswith('rosbags') and type(exc).__name__ in ('ReaderError', 'WriterError'):
        return True
    return type(exc).__name__ in ('BagCountMismatchError', 'BagReadError', 'CalibratorUnavailableError')


def describe_os_error(exc: OSError, outputs: list[str] | None = None) -> str:
    """One line for a file system error, naming the file (or the command's outputs when the OS did not)."""
    where = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        where = f'{exc.filename} -> {exc.filename2}'
    if exc.errno in DISK_FULL_ERRNOS:
        target = where or (', '.join(outputs) if outputs else 'an output file')
        return f'no space left on the device while writing {target}; free some space and run again'
    reason = exc.strerror or str(exc)
    if where is None and outputs:
        return f'{reason} (while writing {", ".join(outputs)})'
    return f'{where}: {reason}' if where is not None else reason


def classify(exc: BaseException, outputs: list[str] | None = None) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that ended a command.

    outputs: the command's output arguments as 'LABEL PATH' strings, named when the OS gives no file name
    (a write that hits a full disk reports ENOSPC without one).
    """
    if _is_user_exception(exc):
        if isinstance(exc, OSError) and not isinstance(exc, UserError):
            return EXIT_USER_ERROR, _one_line(describe_os_error(exc, outputs))
        text = str(exc) or type(exc).__name__
        if type(exc).__module__.startswith('yaml'):
            from ros_ncal.config_io import yaml_error_text
            text = f'invalid YAML: {yaml_error_text(exc)}'
        return EXIT_USER_ERROR, _one_line(text)
    return EXIT_INTERNAL_ERROR, _one_line(f'internal error: {type(exc).__name__}: {exc} '
                                          '(run again with --debug for the traceback)')
