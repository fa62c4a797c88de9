"""One user's entry in a file's POSIX access ACL, written through its extended attribute (no setfacl).

Linux keeps a file's access ACL in the extended attribute `system.posix_acl_access`: a version
word (2), then 8-byte entries (tag, permissions, id), sorted by tag and id. A file with no such
attribute has the three entries its mode bits spell. Adding a named user needs a mask entry too;
the kernel then shows the mask in the mode's group bits, as `setfacl -m` does.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

ATTRIBUTE = "system.posix_acl_access"
VERSION = 2
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF
READ, WRITE, EXECUTE = 4, 2, 1
_TAG_NAMES = {
    USER_OBJ: "user",
    USER: "user",
    GROUP_OBJ: "group",
    GROUP: "group",
    MASK: "mask",
    OTHER: "other",
}


@dataclass(frozen=True, order=True)
class Entry:
    """One ACL entry: a tag, the id it names (NO_ID for the owner, owning group, mask, others), rwx."""

    tag: int
    id: int
    perm: int

    def __str__(self) -> str:
        who = "" if self.id == NO_ID else str(self.id)
        rwx = "".join(
            flag if self.perm & bit else "-" for flag, bit in (("r", READ), ("w", WRITE), ("x", EXECUTE))
        )
        return f"{_TAG_NAMES.get(self.tag, hex(self.tag))}:{who}:{rwx}"


def _from_mode(mode: int) -> list[Entry]:
    return [
        Entry(USER_OBJ, NO_ID, (mode >> 6) & 7),
        Entry(GROUP_OBJ, NO_ID, (mode >> 3) & 7),
        Entry(OTHER, NO_ID, mode & 7),
    ]


def parse(raw: bytes) -> list[Entry]:
    """The entries of a `system.posix_acl_access` value; ValueError if it is not one."""
    if len(raw) < _HEADER.size or (len(raw) - _HEADER.size) % _ENTRY.size:
        raise ValueError(f"an ACL of {len(raw)} bytes")
    (version,) = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise ValueError(f"ACL version {version}")
    found = []
    for at in range(_HEADER.size, len(raw), _ENTRY.size):
        tag, perm, id_ = _ENTRY.unpack_from(raw, at)
        found.append(Entry(tag, id_, perm))
    return found


def encode(entries: list[Entry]) -> bytes:
    """The attribute's bytes for `entries` (sorted as the kernel requires)."""
    ordered = sorted(entries, key=lambda e: (e.tag, e.id))
    return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.id) for e in ordered)


def entries(path: Path) -> list[Entry]:
    """The access ACL of `path`: its attribute, or the three entries of its mode when it has none."""
    try:
        return parse(os.getxattr(path, ATTRIBUTE, follow_symlinks=False))
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    return _from_mode(os.lstat(path).st_mode)


def with_user(current: list[Entry], uid: int, perm: int) -> list[Entry]:
    """`current` with user `uid` granted `perm` as well; the mask widened by `perm` alone."""
    named = next((e for e in current if e.tag == USER and e.id == uid), None)
    mask = next((e for e in current if e.tag == MASK), None)
    if mask is None:  # a minimal ACL: the mask starts as what the owning group has
        mask = Entry(MASK, NO_ID, next(e.perm for e in current if e.tag == GROUP_OBJ))
    kept = [e for e in current if e not in (named, mask)]
    return [
        *kept,
        Entry(USER, uid, (named.perm if named else 0) | perm),
        Entry(MASK, NO_ID, mask.perm | perm),
    ]


def grant(path: Path, uid: int, perm: int) -> bool:
    """Give user `uid` `perm` (READ, EXECUTE, ...) on `path` through its ACL; False if it had them.

    Nothing else changes: the owner, the owning group, others and every other entry keep what they
    had, and the mask grows by `perm` only (so the owning group gains nothing it lacked). Raises
    OSError where the file system keeps no ACLs.
    """
    current = entries(path)
    named = next((e for e in current if e.tag == USER and e.id == uid), None)
    mask = next((e for e in current if e.tag == MASK), None)
    if named is not None and mask is not None and named.perm & mask.perm & perm == perm:
        return False
    os.setxattr(path, ATTRIBUTE, encode(with_user(current, uid, perm)), follow_symlinks=False)
    return True
