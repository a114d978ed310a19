"""A slixmpp external component (XEP-0114 echo bot) and a slixmpp client, through Starling.

The component connects with its shared secret and echoes every chat message.
The client logs in over STARTTLS, talks to the bot, subscribes to the component's
domain and sees it online, finds it in the server's service discovery items,
and gets service-unavailable once the component has disconnected.

Usage: component_echo.py HOST C2S_PORT COMPONENT_PORT CAFILE USER_JID PASSWORD COMPONENT_DOMAIN SECRET
Prints one line per step, then "OK".
"""

import asyncio
import sys

import slixmpp

from slix_user import TestUser
from slixmpp.exceptions import IqError

TIMEOUT = 30


class EchoComponent(slixmpp.ComponentXMPP):
    def __init__(self, domain, secret, host, port):
        super().__init__(domain, secret, host, port)
        self.auto_authorize = None
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.ready.set_result(True))
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("presence_probe", self.on_probe)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            msg.reply(f"echo: {msg['body']}").send()

    def on_subscribe(self, presence):
        contact = presence["from"].bare
        self.send_presence(pto=contact, pfrom=self.boundjid.bare, ptype="subscribed")
        self.send_presence(pto=contact, pfrom=self.boundjid.bare)

    def on_probe(self, presence):
        self.send_presence(pto=presence["from"], pfrom=self.boundjid.bare)


class User(TestUser):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password, cafile)
        self.register_plugin("xep_0030")
        self.messages = asyncio.Queue()
        self.online = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.online.put_nowait(p["from"]))


async def main():
    host, c2s_port, component_port, cafile, user_jid, password, domain, secret = sys.argv[1:9]
    component = EchoComponent(domain, secret, host, int(component_port))
    component.connect()
    await asyncio.wait_for(component.ready, TIMEOUT)
    print("component connected")

    user = User(user_jid, password, cafile)
    user.connect(host, int(c2s_port))
    await asyncio.wait_for(user.session_ready, TIMEOUT)

    user.send_message(mto=f"bot@{domain}", mbody="ping through", mtype="chat")
    while True:
        echo = await asyncio.wait_for(user.messages.get(), TIMEOUT)
        if echo["type"] == "chat":
            break
    assert echo["body"] == "echo: ping through", echo
    assert echo["from"].bare == f"bot@{domain}", echo["from"]
    print("the bot echoed")

    user.send_presence(pto=domain, ptype="subscribe")
    while True:
        seen = await asyncio.wait_for(user.online.get(), TIMEOUT)
        if seen.bare == domain:
            break
    assert user.client_roster[domain]["subscription"] in ("to", "both"), user.client_roster[domain]
    print("the component is on the roster and online")

    items = await user["xep_0030"].get_items(jid=user.boundjid.domain, timeout=TIMEOUT)
    listed = [(jid, name) for jid, _node, name in items["disco_items"]["items"]]
    assert (domain, "Echo service") in listed, listed
    print("disco#items lists the component")

    component.disconnect()
    await asyncio.wait_for(component.disconnected, TIMEOUT)
    user.send_message(mto=f"bot@{domain}", mbody="anyone?", mtype="chat")
    while True:
        error = await asyncio.wait_for(user.messages.get(), TIMEOUT)
        if error["type"] == "error":
            break
    assert error["error"]["condition"] == "service-unavailable", error
    try:
        await user["xep_0030"].get_info(jid=domain, timeout=TIMEOUT)
        raise AssertionError("disco#info to a disconnected component succeeded")
    except IqError as e:
        assert e.condition == "service-unavailable", e.condition
    print("with the component gone: service-unavailable")

    user.disconnect()
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
