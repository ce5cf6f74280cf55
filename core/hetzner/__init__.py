"""Hetzner Cloud: its facts (server types, locations, limits), the token and endpoint as the
hcloud provider reads them (``access``), the bounded API client (``api``) and the live
server-type catalogue (``catalogue``)."""
