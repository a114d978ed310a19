"""The slixmpp client the interop scripts build on: TLS checked against the test
server's certificate (any host name), never plaintext, and at login what every
client does (initial presence, then the roster). `session_ready` settles once
that is done, or fails when authentication does."""

import asyncio
import ssl

import slixmpp


class TestUser(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context(cafile=cafile)
        self.ssl_context.check_hostname = False
        self.enable_plaintext = False
        self.session_ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)

    async def on_session_start(self, _event):
        # The server handles the presence before the roster request, so after
        # the answer this resource is available.
        self.send_presence()
        await self.get_roster()
        if not self.session_ready.done():
            self.session_ready.set_result(True)

    def on_failed_auth(self, _event):
        if not self.session_ready.done():
            self.session_ready.set_exception(RuntimeError(f"{self.boundjid} failed to authenticate"))
