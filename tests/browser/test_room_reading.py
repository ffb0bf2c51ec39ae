"""The room page's reading experience in real Chromium: history paging, the new-messages pill, the
"while you were away" divider, links, mentions, date separators and grouping, the empty room, offline."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.web_app.live import HttpUser, Live

from .conftest import WAIT_MS, Windows
from .room_seed import lived_in_room, say
from .test_chat_page import RECONNECT_MS, enter_room, message


def _ids(page: Any) -> list[int]:
    return [int(i) for i in page.locator("#messages li.message").evaluate_all("items => items.map(i => i.dataset.id)")]


def _scroll_top(page: Any, value: int | None = None) -> float:
    """The message list's scrollTop (set first when given, as a user's scrolling would)."""
    if value is not None:
        page.locator("#messages").evaluate("(list, v) => { list.scrollTop = v; }", value)
    return float(page.locator("#messages").evaluate("list => list.scrollTop"))


def _offset(page: Any, message_id: int, scroll_to: int | None = None) -> float:
    """How far a message's text is from the top of the list's visible area, in px (after scrolling the list first)."""
    return float(
        page.locator(f'#messages li.message[data-id="{message_id}"]').evaluate(
            """(item, scrollTo) => {
                if (scrollTo !== null) item.parentElement.scrollTop = scrollTo;
                return item.querySelector(".message-body").getBoundingClientRect().top
                    - item.parentElement.getBoundingClientRect().top;
            }""",
            scroll_to,
        )
    )


def test_scrolling_up_loads_every_older_page_and_keeps_your_place(windows: Windows, live: Live) -> None:
    """Scrolling to the top fetches the page before (``before=``) without moving what you read; at the end, the whole room once, in order."""
    page = windows.open("dana")
    room_id, _users = lived_in_room(live, "dana", older=113)
    everything = [m["id"] for m in HttpUser(live.url, "reader").register().history(room_id, limit=200)]
    assert len(everything) == 120
    enter_room(page, live, room_id)
    expect(page.locator("#messages li.message")).to_have_count(50)
    assert _ids(page) == everything[-50:]

    # A user reads the oldest message shown, at the top: the page before comes in above it.
    reading = everything[-50]
    where = _offset(page, reading, scroll_to=0)  # read in the same moment as the scroll, before the page loads
    expect(page.locator("#messages li.message")).to_have_count(100)
    assert abs(_offset(page, reading) - where) < 2, "the message being read stays where it was"
    assert _scroll_top(page) > 1000

    _scroll_top(page, 0)
    expect(page.locator("#messages li.message")).to_have_count(120)
    expect(page.locator("#messages .history-start")).to_have_text("This is the beginning of #design-review.")
    assert _ids(page) == everything


def test_new_messages_pill_when_scrolled_up(windows: Windows, live: Live) -> None:
    """Scrolled up, a new message shows a "new messages ↓" pill instead of moving you; the pill takes you down."""
    page = windows.open("dana")
    room_id, users = lived_in_room(live, "dana", older=40)
    enter_room(page, live, room_id)
    pill = page.locator("#new-pill")
    # At the bottom, a new message simply scrolls into view.
    say(users["bob"], room_id, "while you watch")
    expect(message(page, "while you watch")).to_be_in_viewport()
    expect(pill).to_be_hidden()

    _scroll_top(page, 200)
    say(users["bob"], room_id, "while you read old things")
    say(users["carol"], room_id, "and another")
    expect(pill).to_have_text("2 new messages ↓")
    expect(message(page, "and another")).not_to_be_in_viewport()
    pill.click()
    expect(message(page, "and another")).to_be_in_viewport()
    expect(pill).to_be_hidden()


def test_missed_while_away_divider_after_reconnect(windows: Windows, live: Live) -> None:
    """After a reconnect, what the catch-up brought sits below a "messages while you were away" divider."""
    page = windows.open("dana")
    speaker = live.user("speaker")
    room_id = speaker.create_room("away")
    enter_room(page, live, room_id)
    say(speaker, room_id, "before you left")
    expect(message(page, "before you left")).to_have_count(1)

    live.push.stop()
    expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    for text in ("missed one", "missed two"):
        assert speaker.say(room_id, text).status_code == 502
    live.push.start()
    expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=RECONNECT_MS)
    divider = page.locator("#messages .missed-divider")
    expect(divider).to_have_text("2 messages while you were away")
    expect(page.locator("#messages .missed-divider + li.message p.text")).to_have_text("missed one")
    expect(page.locator("#messages li.message").first.locator("p.text")).to_have_text("before you left")


LINK_TEXT = (
    "see https://example.com/a?b=1&c=<x>, (also http://example.org/wiki/Foo_(bar)). "
    "not javascript:alert(1) nor data:text/html,hi nor ftp://example.net/file"
)


def test_links_are_clickable_safe_and_the_text_stays_text(windows: Windows, live: Live) -> None:
    """http(s) URLs become links opening in a new tab with rel=noopener noreferrer; other schemes stay plain text."""
    page = windows.open("dana")
    speaker = live.user("speaker")
    room_id = speaker.create_room("links")
    enter_room(page, live, room_id)
    say(speaker, room_id, LINK_TEXT)
    text = page.locator("#messages li.message p.text")
    expect(text).to_have_text(LINK_TEXT)
    links = text.locator("a")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_text("https://example.com/a?b=1&c=")
    expect(links.nth(0)).to_have_attribute("href", "https://example.com/a?b=1&c=")
    expect(links.nth(1)).to_have_attribute("href", "http://example.org/wiki/Foo_(bar)")
    for i in range(2):
        expect(links.nth(i)).to_have_attribute("target", "_blank")
        expect(links.nth(i)).to_have_attribute("rel", re.compile(r"\bnoopener\b.*\bnoreferrer\b"))
    assert page.locator("#messages a[href^='javascript'], #messages a[href^='data'], #messages x").count() == 0


def test_mentions_are_highlighted_and_your_own_name_stands_out(windows: Windows, live: Live) -> None:
    """@name is highlighted; a mention of you (any case, names with spaces too) marks the message itself."""
    page = windows.open("Dana Scully")
    bob, carol = live.user("bob"), live.user("carol")
    room_id = bob.create_room("mentions")
    enter_room(page, live, room_id)
    say(bob, room_id, "@carol can you look?")
    say(carol, room_id, "@dana scully, over to you")
    say(bob, room_id, "mail me at bob@example.com")
    to_carol = message(page, "@carol can you look?")
    expect(to_carol.locator(".mention")).to_have_text("@carol")
    expect(to_carol.locator(".mention.me")).to_have_count(0)
    expect(to_carol).not_to_have_class(re.compile("mentions-me"))
    to_me = message(page, "over to you")
    expect(to_me.locator(".mention.me")).to_have_text("@dana scully")
    expect(to_me).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(message(page, "mail me at").locator(".mention")).to_have_count(0)


def test_date_separators_and_grouping_by_author(windows: Windows, live: Live) -> None:
    """Each day starts with a separator; one author's consecutive messages share one header."""
    page = windows.open("dana")
    room_id, users = lived_in_room(live, "dana")
    enter_room(page, live, room_id)
    starts = page.locator("#messages li.message[data-day-label]")
    expect(starts).to_have_count(2)
    assert starts.evaluate_all("items => items.map(i => i.dataset.dayLabel)") == ["Yesterday", "Today"]
    expect(starts.nth(0).locator("p.text")).to_have_text("Morning! I pushed the new room layout to staging.")
    expect(starts.nth(1).locator("p.text")).to_have_text("Can we ship it today?")
    grouped = page.locator("#messages li.message[data-grouped] p.text")
    expect(grouped).to_have_text(["Notes are here: https://example.com/notes/room-layout?v=2", "Draft by noon."])
    expect(message(page, "Draft by noon.").locator(".meta")).to_be_hidden()
    # A new message from the last author joins their group, live.
    say(users["bob"], room_id, "Done.")
    expect(message(page, "Done.")).to_have_attribute("data-grouped", "")
    say(users["carol"], room_id, "Thanks!")
    expect(message(page, "Thanks!")).not_to_have_attribute("data-grouped", "")


def test_empty_room_welcomes_until_the_first_message(windows: Windows, live: Live) -> None:
    """A room with no messages shows a friendly empty state, gone once someone speaks."""
    page = windows.open("dana")
    room_id = live.user("owner").create_room("quiet")
    enter_room(page, live, room_id)
    empty = page.locator("#messages .empty-state")
    expect(empty).to_contain_text("No messages in #quiet yet")
    page.fill("#content", "first!")
    page.press("#content", "Enter")
    expect(message(page, "first!")).to_have_count(1)
    expect(empty).to_have_count(0)


def test_offline_member_list_is_marked_stale_and_retry_now_reconnects_at_once(windows: Windows, live: Live) -> None:
    """Offline, the member list says it may be out of date; "Retry now" reconnects without waiting out the backoff."""
    page = windows.open("dana")
    room_id = live.user("owner").create_room("flaky")
    enter_room(page, live, room_id)
    retry = page.locator("#retry-now")
    expect(retry).to_be_hidden()
    expect(page.locator("#members-stale")).to_be_hidden()

    live.push.stop()
    expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    expect(page.locator("#members-stale")).to_be_visible()
    expect(page.locator("#members")).to_have_class(re.compile(r"\bstale\b"))
    expect(retry).to_be_visible()
    # Let the backoff grow past what we will wait below.
    expect(page.locator("#status")).to_have_text(re.compile(r"retrying in ([5-9]|1\d) s"), timeout=WAIT_MS * 3)
    live.push.start()
    retry.click()
    expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=3000)
    expect(page.locator("#members-stale")).to_be_hidden()
    expect(retry).to_be_hidden()
    expect(page.locator("#member-list .member-name")).to_have_text(["dana"])
