"""The one ACL entry the kit writes as root: what setfacl writes, nothing else changed."""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from pgqueue.server import posix_acl
from pgqueue.server.posix_acl import (
    EXECUTE,
    GROUP,
    GROUP_OBJ,
    MASK,
    NO_ID,
    OTHER,
    READ,
    USER,
    USER_OBJ,
    Entry,
)

NOBODY = 65534


def _folder(tmp_path: Path, mode: int) -> Path:
    folder = tmp_path / f"f{mode:o}"
    folder.mkdir()
    folder.chmod(mode)
    return folder


def _acls_supported(path: Path) -> bool:
    try:
        posix_acl.grant(path, NOBODY, EXECUTE)
    except OSError:
        return False
    return True


def test_a_minimal_acl_gains_the_user_and_a_mask_of_what_the_group_had_plus_traverse():
    minimal = [Entry(USER_OBJ, NO_ID, 7), Entry(GROUP_OBJ, NO_ID, 5), Entry(OTHER, NO_ID, 0)]
    assert sorted(posix_acl.with_user(minimal, 1234, EXECUTE)) == sorted(
        [*minimal, Entry(USER, 1234, EXECUTE), Entry(MASK, NO_ID, 5)]
    )


def test_other_named_entries_stay_and_the_mask_grows_by_the_grant_only():
    # a mask narrowed on purpose (a group's write masked off) must not be widened to rwx
    current = [
        Entry(USER_OBJ, NO_ID, 7),
        Entry(USER, 1000, 4),
        Entry(GROUP_OBJ, NO_ID, 0),
        Entry(GROUP, 50, 6),
        Entry(MASK, NO_ID, 4),
        Entry(OTHER, NO_ID, 0),
    ]
    after = posix_acl.with_user(current, 1234, EXECUTE)
    assert Entry(MASK, NO_ID, 4 | EXECUTE) in after and Entry(GROUP, 50, 6) in after
    assert Entry(USER, 1000, 4) in after and Entry(USER, 1234, EXECUTE) in after
    assert len(after) == len(current) + 1
    # a user who had read keeps it and gains traverse, in one entry
    again = posix_acl.with_user(after, 1000, EXECUTE)
    assert Entry(USER, 1000, 4 | EXECUTE) in again and len(again) == len(after)


def test_encoding_sorts_by_tag_and_id_and_parses_back():
    entries = [Entry(OTHER, NO_ID, 0), Entry(USER, 9, 1), Entry(USER_OBJ, NO_ID, 7), Entry(USER, 3, 4)]
    raw = posix_acl.encode(entries)
    assert raw[:4] == (2).to_bytes(4, "little") and len(raw) == 4 + 8 * len(entries)
    assert posix_acl.parse(raw) == sorted(entries, key=lambda e: (e.tag, e.id))
    for broken in (b"", raw[:-1], (3).to_bytes(4, "little") + raw[4:]):
        with pytest.raises(ValueError):
            posix_acl.parse(broken)


def test_a_real_folder_gets_the_entry_and_its_mode_shows_the_mask(tmp_path):
    folder = _folder(tmp_path, 0o700)
    if not _acls_supported(folder):
        pytest.skip(f"the file system of {tmp_path} keeps no POSIX ACLs")
    assert str(Entry(USER, NOBODY, EXECUTE)) == f"user:{NOBODY}:--x"
    assert sorted(posix_acl.entries(folder)) == sorted(
        [
            Entry(USER_OBJ, NO_ID, 7),
            Entry(USER, NOBODY, EXECUTE),
            Entry(GROUP_OBJ, NO_ID, 0),
            Entry(MASK, NO_ID, EXECUTE),
            Entry(OTHER, NO_ID, 0),
        ]
    )
    # the kernel shows the mask in the group bits; the owning group's own entry is still ---
    assert stat.S_IMODE(folder.stat().st_mode) == 0o710
    assert posix_acl.grant(folder, NOBODY, EXECUTE) is False, "a second grant changes nothing"


def test_a_group_readable_folder_keeps_what_its_group_had(tmp_path):
    folder = _folder(tmp_path, 0o750)
    if not _acls_supported(folder):
        pytest.skip(f"the file system of {tmp_path} keeps no POSIX ACLs")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert Entry(MASK, NO_ID, READ | EXECUTE) in posix_acl.entries(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it switches to uid 65534")
def test_the_granted_user_alone_can_enter():
    base = Path(tempfile.mkdtemp(prefix="pgqueue-acl-"))  # pytest's tmp_path sits in a 0700 folder
    base.chmod(0o711)
    try:
        _enter_as_granted_only(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _enter_as_granted_only(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 0o700)
    (folder / "inside").write_text("x")
    if not _acls_supported(folder):
        pytest.skip(f"the file system of {tmp_path} keeps no POSIX ACLs")

    def can_stat_as(uid: int) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(uid)
                os.stat(folder / "inside")
                os._exit(0)
            except BaseException:
                os._exit(1)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    assert can_stat_as(NOBODY), "the granted user traverses"
    assert not can_stat_as(NOBODY - 1), "another user does not"
