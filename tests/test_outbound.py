"""User-given URLs reach public addresses only, in every spelling; no lookup or
connection is made by these tests (the resolver is a stub)."""

from __future__ import annotations

import pytest

from wf_core.outbound import RefusedDestination, check_url, numeric_host

# Host spellings of internal addresses, and what a stub resolver gives for the names.
INTERNAL = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:a9fe:a9fe::]",
    "0.0.0.0",
    "0",
    "[::]",
    "169.254.169.254",
    "[fe80::1]",
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "[fc00::1]",
    "[ff02::1]",
    "localhost",
    "metadata.internal",
    "rebinding.example",
]
STUB_DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "metadata.internal": ["169.254.169.254"],
    # One public, one private answer: any private answer refuses the URL.
    "rebinding.example": ["93.184.216.34", "10.1.2.3"],
    "public.example": ["93.184.216.34"],
}


def stub_resolver(asked: list[str]):
    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in STUB_DNS:
            raise OSError("no such name")
        return STUB_DNS[host]

    return resolve


@pytest.mark.parametrize("host", INTERNAL)
def test_every_internal_spelling_is_refused(host: str) -> None:
    asked: list[str] = []
    with pytest.raises(RefusedDestination, match="public address"):
        check_url(f"https://{host}:8443/hook", stub_resolver(asked))
    # Numeric spellings are read without any lookup.
    if numeric_host(host) is not None:
        assert asked == []


def test_public_names_and_addresses_pass() -> None:
    check_url("https://public.example/hook", stub_resolver([]))
    check_url("https://93.184.216.34/hook", stub_resolver([]))


def test_numeric_forms_read_as_the_c_resolver_reads_them() -> None:
    assert str(numeric_host("127.1")) == "127.0.0.1"
    assert str(numeric_host("2130706433")) == "127.0.0.1"
    assert str(numeric_host("0x7f000001")) == "127.0.0.1"
    assert str(numeric_host("0177.0.0.01")) == "127.0.0.1"
    assert str(numeric_host("10.1")) == "10.0.0.1"
    assert numeric_host("example.com") is None
    assert numeric_host("1.2.3.4.5") is None
    assert numeric_host("256.1.1.1") is None


def test_operator_allowed_hosts_skip_the_address_check_and_only_they_get_http() -> None:
    resolve = stub_resolver([])
    check_url("http://127.0.0.1:9000/hook", resolve, ["127.0.0.1"], allow_http=True)
    check_url("https://localhost:9000/x", resolve, ["localhost:9000"])
    with pytest.raises(RefusedDestination):
        check_url("https://localhost:9001/x", resolve, ["localhost:9000"])
    with pytest.raises(RefusedDestination, match="https"):
        check_url("http://public.example/hook", resolve, [], allow_http=False)
    with pytest.raises(RefusedDestination, match="operator allows"):
        check_url("http://public.example/hook", resolve, [], allow_http=True)
    with pytest.raises(RefusedDestination):
        check_url("ftp://public.example/x", resolve)
    with pytest.raises(RefusedDestination, match="without credentials"):
        check_url("https://user:pw@public.example/x", resolve)
    with pytest.raises(RefusedDestination, match="does not resolve"):
        check_url("https://nowhere.example/x", resolve)
