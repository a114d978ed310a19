"""The RFC 6121 story with two independent clients: Alice on slixmpp, Bob on aioxmpp.

Alice adds Bob, Bob approves and adds Alice back, Alice approves; both see each
other online. Alice logs out; Bob sends her three messages; Alice logs back in and
receives them in order with XEP-0203 delay stamps. Finally Alice's TCP connection
is cut without a closing </stream:stream>, and Bob receives her unavailable
presence.

Usage: im_story.py HOST PORT CAFILE ALICE_JID BOB_JID PASSWORD
Prints one line per step, then "OK". Exits non-zero on any failure or timeout.
"""

import asyncio
import sys

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher

from slix_user import TestUser

TIMEOUT = 30
OFFLINE_BODIES = ["first while away", "second while away", "third while away"]


class Alice(TestUser):
    """A slixmpp client that approves subscription requests, as its default does."""

    def __init__(self, jid, password, cafile):
        super().__init__(jid, password, cafile)
        self.roster.auto_authorize = True
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0203")
        self.messages = asyncio.Queue()
        self.available_contacts = asyncio.Queue()
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_available)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.messages.put_nowait(msg)

    def on_available(self, presence):
        if presence["from"].bare != self.boundjid.bare:
            self.available_contacts.put_nowait(presence["from"])


async def alice_online(host, port, cafile, jid, password):
    alice = Alice(jid, password, cafile)
    alice.connect(host, port)
    await asyncio.wait_for(alice.session_ready, TIMEOUT)
    return alice


class Bob:
    """An aioxmpp client that approves Alice's request and asks for hers."""

    def __init__(self, host, port, jid, password):
        self.client = aioxmpp.Client(
            aioxmpp.JID.fromstr(jid),
            aioxmpp.make_security_layer(password, no_verify=True),
            override_peer=[(host, port, aioxmpp.connector.STARTTLSConnector())],
        )
        self.roster = self.client.summon(aioxmpp.RosterClient)
        self.presence = self.client.summon(aioxmpp.PresenceClient)
        self.presence_server = self.client.summon(aioxmpp.PresenceServer)
        self.available = asyncio.Queue()
        self.unavailable = asyncio.Queue()
        self.roster.on_subscribe.connect(self.on_subscribe)
        self.presence.on_available.connect(self.on_available)
        self.presence.on_unavailable.connect(self.on_unavailable)

    def is_contact(self, jid):
        # The server also reflects Bob's own presence to him (RFC 6121 §4.2.2).
        return jid.bare() != self.client.local_jid.bare()

    def on_available(self, jid, _stanza):
        if self.is_contact(jid):
            self.available.put_nowait(jid)

    def on_unavailable(self, jid, _stanza):
        if self.is_contact(jid):
            self.unavailable.put_nowait(jid)

    def on_subscribe(self, stanza):
        self.roster.approve(stanza.from_.bare())
        self.roster.subscribe(stanza.from_.bare())

    async def send_chat(self, to, body):
        message = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=to)
        message.body[None] = body
        await self.client.send(message)


async def main():
    host, port, cafile, alice_jid, bob_jid, password = sys.argv[1:7]
    port = int(port)
    bob = Bob(host, port, bob_jid, password)
    async with bob.client.connected():
        bob.presence_server.set_presence(aioxmpp.PresenceState(True))
        alice = await alice_online(host, port, cafile, alice_jid, password)
        print("both logged in")

        alice.send_presence(pto=bob.client.local_jid.bare(), ptype="subscribe")
        seen_by_alice = await asyncio.wait_for(alice.available_contacts.get(), TIMEOUT)
        assert seen_by_alice.bare == str(bob.client.local_jid.bare()), seen_by_alice
        seen_by_bob = await asyncio.wait_for(bob.available.get(), TIMEOUT)
        assert str(seen_by_bob) == alice.boundjid.full, seen_by_bob
        print("both see each other online")

        bob_item = bob.roster.items[aioxmpp.JID.fromstr(alice.boundjid.bare)]
        assert bob_item.subscription == "both", bob_item.subscription
        alice_item = alice.client_roster[str(bob.client.local_jid.bare())]
        assert alice_item["subscription"] == "both", alice_item["subscription"]
        print("both rosters show subscription both")

        alice.disconnect()
        await asyncio.wait_for(alice.disconnected, TIMEOUT)
        gone = await asyncio.wait_for(bob.unavailable.get(), TIMEOUT)
        assert str(gone) == alice.boundjid.full, gone
        print("bob saw alice log out")

        alice_bare = aioxmpp.JID.fromstr(alice_jid).bare()
        for body in OFFLINE_BODIES:
            await bob.send_chat(alice_bare, body)
        print("bob sent three messages while alice was away")

        alice = await alice_online(host, port, cafile, alice_jid, password)
        for expected in OFFLINE_BODIES:
            msg = await asyncio.wait_for(alice.messages.get(), TIMEOUT)
            assert msg["body"] == expected, (msg["body"], expected)
            assert msg["from"].bare == str(bob.client.local_jid.bare()), msg["from"]
            stamp = msg["delay"]["stamp"]
            assert stamp is not None, f"no delay stamp on {msg}"
            assert msg["delay"]["from"].full == alice.boundjid.domain, msg["delay"]["from"]
        print("alice received the three messages in order with delay stamps")

        back = await asyncio.wait_for(bob.available.get(), TIMEOUT)
        assert str(back) == alice.boundjid.full, back
        alice.transport.abort()
        cut = await asyncio.wait_for(bob.unavailable.get(), TIMEOUT)
        assert str(cut) == alice.boundjid.full, cut
        print("bob saw alice's cut connection as unavailable")
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
