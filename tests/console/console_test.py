#!/usr/bin/env python3
"""Drives the Runner's web console in headless chromium (Playwright), as an operator
would. Run by tests/console.rs, which starts the Runner and sets the scene:

- orders o-1, o-2, o-3 of tenant acme completed (o-1's customer id is markup); o-2's
  MarkPaid waits in the outbox (the Gateway answers 503), o-3's was rejected: one dead
  letter;
- o-4 quarantined by a faulty manifest, since fixed and reloaded.

Environment: CONSOLE_BASE (the ops port's URL), CONSOLE_TOKEN (the admin token),
CONSOLE_SCREENSHOTS (a directory), CONSOLE_CHROMIUM (the browser), CONSOLE_MARKUP
(o-1's customer id). Exits non-zero, saying which check failed, on the first failure.
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_BASE"]
TOKEN = os.environ["CONSOLE_TOKEN"]
SHOTS = os.environ["CONSOLE_SCREENSHOTS"]
CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
MARKUP = os.environ["CONSOLE_MARKUP"]
STEP_MS = 20_000
SAGA = "order_fulfilment"


def step(text):
    print(f"console: {text}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def listed_correlations(page):
    return page.locator("#instances tbody tr td:first-child a").all_inner_texts()


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        expect.set_options(timeout=STEP_MS)
        requests, problems, dialogs = [], [], []
        page.on("request", lambda r: requests.append(r))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None,
        )

        step("the page loads without a token, with its security headers")
        answer = page.goto(f"{BASE}/ui")
        assert answer.status == 200, answer.status
        csp = answer.headers.get("content-security-policy", "")
        assert csp.startswith("default-src 'self'"), csp
        assert answer.headers.get("x-content-type-options") == "nosniff", answer.headers

        step("overview: health, mode, sagas, effects, counters, refreshed")
        process = page.locator("#process")
        expect(process).to_contain_text("healthy")
        expect(process).to_contain_text("combined")
        expect(page.locator("#sagas")).to_contain_text(SAGA)
        expect(page.locator("#effects")).to_contain_text("charge_card")
        expect(page.locator("#counters")).to_contain_text("transitions committed")
        expect(page.locator("#shards a")).to_have_attribute("href", "http://runner-b.invalid:9090/ui")
        # A second refresh (they come every 5 s). No wait_for_function: the page's
        # policy refuses the string evaluation it uses.
        expect(page.locator("#overview-updated")).to_have_attribute(
            "data-refreshes", re.compile(r"^([2-9]|\d\d+)$"), timeout=15_000
        )
        shot(page, "overview")

        step("admin views need the token; a wrong one is refused")
        page.click("#views a[data-view=instances]")
        page.fill("#instances-form [name=tenant]", "acme")
        page.fill("#instances-form [name=saga]", SAGA)
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#notice")).to_contain_text("enter the admin token")
        assert not [r for r in requests if "/admin/" in r.url], "no admin call without a token"
        page.fill("#token", "not-the-token")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#notice")).to_contain_text("refused (401)")
        page.click("#forget-token")

        step("with the token: the instances of the orders, paged")
        page.fill("#token", TOKEN)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#token")).to_have_value("")
        stored = page.evaluate("[sessionStorage.getItem('runner.adminToken'), localStorage.length]")
        assert stored == [TOKEN, 0], stored
        page.fill("#instances-form [name=limit]", "50")
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#instances tbody tr")).to_have_count(3)
        assert sorted(listed_correlations(page)) == ["o-1", "o-2", "o-3"], listed_correlations(page)
        expect(page.locator("#instances")).to_contain_text("completed")
        page.fill("#instances-form [name=limit]", "2")
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#instances tbody tr")).to_have_count(2)
        first = listed_correlations(page)
        page.click("#next-page")
        expect(page.locator("#instances tbody tr")).to_have_count(1)
        last = listed_correlations(page)
        assert sorted(first + last) == ["o-1", "o-2", "o-3"], (first, last)
        expect(page.locator("#next-page")).to_be_disabled()
        page.click("#previous-page")
        expect(page.locator("#instances tbody tr")).to_have_count(2)
        assert listed_correlations(page) == first
        page.select_option("#instances-form [name=status]", "active")
        page.fill("#instances-form [name=limit]", "50")
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#instances")).to_contain_text("no instances match")
        page.select_option("#instances-form [name=status]", "completed")
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#instances tbody tr")).to_have_count(3)
        shot(page, "instances")

        step("quarantine: o-4's record, retried after a cancelled confirm, applies")
        page.click("#views a[data-view=quarantine]")
        page.fill("#quarantine-form [name=tenant]", "acme")
        page.click("#quarantine-form button[type=submit]")
        rows = page.locator("#quarantine tbody tr")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("program")
        expect(rows).to_contain_text("o-4")
        shot(page, "quarantine")

        def answer_dialog(accept):
            def handle(dialog):
                dialogs.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()

            page.once("dialog", handle)

        posts = lambda: [r for r in requests if r.method == "POST"]  # noqa: E731
        answer_dialog(False)
        rows.get_by_role("button", name="Retry").click()
        page.wait_for_timeout(300)
        assert dialogs and "Retry 1" in dialogs[-1], dialogs
        assert not posts(), "a cancelled confirm sends nothing"
        expect(rows).to_have_count(1)
        answer_dialog(True)
        rows.get_by_role("button", name="Retry").click()
        results = page.locator("#quarantine-results")
        expect(results).to_contain_text("applied")
        expect(results).to_contain_text("1 transition(s)")
        expect(page.locator("#quarantine")).to_contain_text("no quarantine records match")
        shot(page, "quarantine-retried")

        step("o-4 now shows among the instances")
        page.click("#views a[data-view=instances]")
        page.select_option("#instances-form [name=status]", "")
        page.click("#instances-form button[type=submit]")
        expect(page.locator("#instances tbody tr")).to_have_count(4)
        assert "o-4" in listed_correlations(page)

        step("dead letters: o-3's MarkPaid, discarded after confirming")
        page.click("#views a[data-view=deadletters]")
        page.fill("#deadletters-form [name=tenant]", "acme")
        page.click("#deadletters-form button[type=submit]")
        rows = page.locator("#deadletters tbody tr")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("MarkPaid")
        expect(rows).to_contain_text("o-3")
        shot(page, "deadletters")
        answer_dialog(True)
        rows.get_by_role("button", name="Discard").click()
        expect(page.locator("#deadletters-result")).to_contain_text("1 discarded")
        expect(page.locator("#deadletters")).to_contain_text("no dead letters match")

        step("one instance: o-2's MarkPaid waiting in its outbox")
        page.click("#views a[data-view=instances]")
        page.fill("#find-form [name=correlation]", "o-2")
        page.click("#find-form button[type=submit]")
        expect(page.locator("#instance-title")).to_contain_text("o-2")
        outbox = page.locator("#instance-outbox tbody tr")
        expect(outbox).to_have_count(1)
        expect(outbox).to_contain_text("aggregate")
        expect(outbox).to_contain_text("MarkPaid")

        step("one instance: o-1's state (markup shown as text), timers, outbox, history")
        page.click("#views a[data-view=instances]")
        page.fill("#find-form [name=correlation]", "o-1")
        page.click("#find-form button[type=submit]")
        expect(page.locator("#instance-title")).to_contain_text("o-1")
        expect(page.locator("#instance-summary")).to_contain_text("completed")
        state = page.locator("#instance-state")
        expect(state).to_contain_text(json.dumps(MARKUP)[1:-1])
        expect(page.locator("#instance-timers")).to_contain_text("no pending timers")
        expect(page.locator("#instance-outbox")).to_contain_text("nothing waiting to be sent")
        assert page.evaluate("document.images.length") == 0, "markup became an element"
        assert page.locator("main b").count() == 0, "markup became an element"
        assert page.title() == "Runner console", page.title()
        note = page.locator("#history-note")
        expect(note).not_to_be_empty()
        shot(page, "instance")
        entries = page.locator("#history li.entry")
        if entries.count() == 0:
            raise AssertionError(f"the history timeline shows no entries: {note.inner_text()!r}")
        assert entries.count() >= 2, entries.all_inner_texts()
        expect(entries.first).to_contain_text("OrderPlaced")
        expect(entries.first).to_contain_text("start → active")
        expect(entries.last).to_contain_text("→ completed")

        step("the token only ever travelled as a bearer header")
        for r in requests:
            assert TOKEN not in r.url, r.url
            if "/admin/" in r.url:
                auth = r.headers.get("authorization", "")
                assert auth in (f"Bearer {TOKEN}", "Bearer not-the-token"), (r.url, auth)
            else:
                assert "authorization" not in r.headers, r.url
        assert not problems, problems
        browser.close()
    step("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"console: FAILED: {e}", file=sys.stderr)
        raise
