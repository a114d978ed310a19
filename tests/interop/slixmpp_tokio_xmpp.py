"""A slixmpp client and a tokio-xmpp client (interop/tokio-xmpp) exchange messages through Starling.

Usage: slixmpp_tokio_xmpp.py HOST PORT CAFILE TOKIO_XMPP_CHAT_BINARY PASSWORD
The slixmpp side logs in as alice@localhost/slix, the tokio-xmpp side as bob@localhost/tokio.
Prints the slixmpp mechanism, the tokio-xmpp client's output, then "OK".
"""

import asyncio
import os
import sys

from slix_user import TestUser

TIMEOUT = 30


class Alice(TestUser):
    def __init__(self, password, cafile):
        super().__init__("alice@localhost/slix", password, cafile)
        self.messages = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))


async def main():
    host, port, cafile, binary, password = sys.argv[1:6]
    alice = Alice(password, cafile)
    alice.connect(host, int(port))
    await asyncio.wait_for(alice.session_ready, TIMEOUT)
    print(f"slixmpp {alice.boundjid.full} mechanism {alice['feature_mechanisms'].mech.name}")

    env = dict(os.environ, SSL_CERT_FILE=cafile)
    bob = await asyncio.create_subprocess_exec(
        binary, "--addr", f"{host}:{port}", "--jid", "bob@localhost/tokio", "--password", password,
        "--send", "alice@localhost/slix", "hello from tokio-xmpp",
        "--expect", "alice@localhost", "hello from slixmpp",
        "--ping",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    got = await asyncio.wait_for(alice.messages.get(), TIMEOUT)
    assert got["body"] == "hello from tokio-xmpp", got
    assert got["from"].full == "bob@localhost/tokio", got["from"]
    alice.send_message(mto=got["from"], mbody="hello from slixmpp", mtype="chat")

    stdout, stderr = await asyncio.wait_for(bob.communicate(), TIMEOUT)
    print(stdout.decode(), end="")
    if bob.returncode != 0:
        sys.exit(f"tokio-xmpp client failed: {stderr.decode()}")
    alice.disconnect()
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
