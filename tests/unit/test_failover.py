"""Failover before the first token: which errors move a request, and what is raised last."""

from __future__ import annotations

import pytest

from ollang.errors import (
    ConnectionCutError,
    InvalidInputError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
)
from ollang.routing.failover import Failover, fails_over, is_cut, tells_about_host


@pytest.mark.parametrize(
    ("err", "over", "about_host"),
    [
        (OllamaUnavailableError("http://a"), True, True),
        (ModelNotFoundError("m"), True, True),
        (ConnectionCutError("http://a"), True, True),
        (OllamaResponseError("oom", 500), True, False),
        (OllamaResponseError("bad gateway", 502), True, False),
        (OllamaResponseError("bad request", 400), False, False),
        (OllamaResponseError("mid-stream model error", -1), False, False),
        (OllamaTimeoutError("http://a"), False, False),
        (InvalidInputError("empty"), False, False),
        (RuntimeError("bug"), False, False),
    ],
)
def test_which_errors_fail_over(err, over, about_host):
    assert fails_over(err) is over
    assert tells_about_host(err) is about_host


def test_a_cut_is_a_response_error_without_a_status():
    assert is_cut(ConnectionCutError("http://a"))
    assert not is_cut(OllamaResponseError("x", 500))


def test_tried_and_avoided_hosts_are_excluded_and_the_avoided_come_back_last():
    failover = Failover("m", avoid=["c"])
    assert failover.exclude() == ["c"]
    assert failover.failed("a", OllamaUnavailableError("http://a"))
    assert failover.exclude() == ["a", "c"]
    # nothing else left: the avoided host after all
    assert failover.no_host_left(OllamaUnavailableError("none")) is None
    assert failover.exclude() == ["a"]


def test_an_error_that_is_the_answer_stops_the_failover():
    failover = Failover("m")
    assert not failover.failed("a", OllamaResponseError("bad request", 400))
    assert failover.exclude() == []


def test_every_host_lacking_the_model_is_one_not_found_naming_what_is_installed():
    failover = Failover("m")
    failover.failed("a", ModelNotFoundError("m", ["x"]))
    failover.failed("b", ModelNotFoundError("m", ["y"]))
    final = failover.no_host_left(OllamaUnavailableError("none"), ["x", "y"])
    assert isinstance(final, ModelNotFoundError) and final.installed == ["x", "y"]
    assert final.exit_code == 4 and final.http_status == 404
    # without a list from the router: what the last host said it has
    again = Failover("m")
    again.failed("a", ModelNotFoundError("m", ["z"]))
    final = again.no_host_left(OllamaUnavailableError("none"))
    assert isinstance(final, ModelNotFoundError) and final.installed == ["z"]


def test_a_single_failure_is_raised_as_it_was_and_several_as_the_routers_error():
    failover = Failover("m")
    cut = ConnectionCutError("http://a")
    failover.failed("a", cut)
    assert failover.no_host_left(OllamaUnavailableError("none")) is cut
    failover.failed("b", OllamaResponseError("oom", 500))
    last = OllamaUnavailableError("both")
    assert failover.no_host_left(last) is last
