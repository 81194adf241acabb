"""A real IMAP server for the tests: Debian's Dovecot, started with its own configuration on a free
port, with a throw-away maildir and one user (a passwd-file with a {PLAIN} password). `make test`
installs dovecot-imapd when it is missing, as it does chromium.

Dovecot 2.3 started with its own config: `imap-login` refuses to run as root, so the login
processes run as `dovenull` and the rest as `dovecot`, which owns the mail; no TLS; its sockets
and logs in its own base_dir."""

import imaplib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"


@dataclass
class ImapServer:
    host: str
    port: int
    user: str
    password: str
    root: Path

    def append(self, raw: bytes, folder: str = "INBOX", *, when: float | None = None) -> None:
        """Put a message in a folder, as a mail server delivering it would (at `when`, a
        time.time() value; now by default)."""
        with imaplib.IMAP4(self.host, self.port) as imap:
            imap.login(self.user, self.password)
            imap.append(folder, "", imaplib.Time2Internaldate(when or time.time()), raw)
            imap.logout()

    def create_folder(self, folder: str) -> None:
        with imaplib.IMAP4(self.host, self.port) as imap:
            imap.login(self.user, self.password)
            imap.create(folder)
            imap.logout()

    def flags(self, folder: str = "INBOX") -> list[str]:
        """Each message's flags, in UID order (read-only: looking changes nothing)."""
        with imaplib.IMAP4(self.host, self.port) as imap:
            imap.login(self.user, self.password)
            imap.select(folder, readonly=True)
            _, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            imap.logout()
        return [item.decode() for item in data if item]

    def delete_folder(self, folder: str) -> None:
        with imaplib.IMAP4(self.host, self.port) as imap:
            imap.login(self.user, self.password)
            imap.delete(folder)
            imap.logout()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_dovecot(root: Path, *, user: str = "alex@agency.example", password: str = "imap-pass") -> tuple[ImapServer, subprocess.Popen]:
    if not Path(DOVECOT).exists():
        raise RuntimeError(f"{DOVECOT} is missing: `make test` installs Debian's dovecot-imapd "
                           "(apt-get install dovecot-imapd)")
    root.mkdir(parents=True, exist_ok=True)
    mail, run = root / "mail", root / "run"
    for folder in (mail, run):
        folder.mkdir(exist_ok=True)
    port = _free_port()
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    config = root / "dovecot.conf"
    config.write_text(f"""
base_dir = {run}
state_dir = {root / "state"}
log_path = {root / "dovecot.log"}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
mail_location = maildir:{mail}/%u
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = {root / "passwd"}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
    (root / "state").mkdir(exist_ok=True)
    shutil.chown(mail, "dovecot", "dovecot")
    os.chmod(root, 0o755)
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot stopped: {process.stdout.read().decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"dovecot did not listen on {port}: {(root / 'dovecot.log').read_text(errors='replace')}")
    return ImapServer("127.0.0.1", port, user, password, root), process


def stop_dovecot(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
