"""Two slixmpp clients log in to Starling over STARTTLS, bind, and exchange a message.

Usage: slixmpp_chat.py HOST PORT CAFILE JID1 JID2 PASSWORD
Prints one line per client with the SASL mechanism it negotiated, then "OK".
Exits non-zero on any failure or after a timeout.
"""

import asyncio
import sys

from slix_user import TestUser

TIMEOUT = 30


class Client(TestUser):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password, cafile)
        self.messages = asyncio.Queue()
        self.add_event_handler("message", self.on_message)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.messages.put_nowait(msg)

    def mechanism(self):
        return self["feature_mechanisms"].mech.name


async def main():
    host, port, cafile, jid1, jid2, password = sys.argv[1:7]
    a = Client(jid1, password, cafile)
    b = Client(jid2, password, cafile)
    for client in (a, b):
        client.connect(host, int(port))
    await asyncio.wait_for(asyncio.gather(a.session_ready, b.session_ready), TIMEOUT)
    print(f"{a.boundjid.full} mechanism {a.mechanism()}")
    print(f"{b.boundjid.full} mechanism {b.mechanism()}")

    a.send_message(mto=b.boundjid.full, mbody="hello from slixmpp a", mtype="chat")
    got = await asyncio.wait_for(b.messages.get(), TIMEOUT)
    assert got["body"] == "hello from slixmpp a", got
    assert got["from"].full == a.boundjid.full, got["from"]

    b.send_message(mto=a.boundjid.bare, mbody="reply to bare", mtype="chat")
    got = await asyncio.wait_for(a.messages.get(), TIMEOUT)
    assert got["body"] == "reply to bare", got

    for client in (a, b):
        client.disconnect()
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
