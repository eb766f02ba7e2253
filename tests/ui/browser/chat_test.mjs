// Real-browser test of the crwalker chat: headless Debian chromium driven by playwright-core.
//
// usage: node chat_test.mjs --url http://127.0.0.1:7860/ --out shot.png [--message "..."] [--chromium /usr/bin/chromium]
//                          [--timeout 120000] [--user user --password pw] [--guided 1 --guided-message "..."]
// Opens the page, sends a message, checks that the reply is streamed (its text grows over several
// observations), that the reasoning tree (SVG) and at least one movie card appear, that a hostile message
// is shown as text (no injected element, no script run), and saves a screenshot. With --guided 1 it then
// starts a new conversation, turns guided mode on, sends --guided-message, waits for the policy's question
// with its Yes / No buttons, clicks Yes and checks that the next reply arrives (screenshot <out>-guided.png).
// Prints one JSON line with the observations; exits 1 on failure.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function parseArgs(argv) {
  const args = {
    url: "http://127.0.0.1:7860/",
    out: "browser_chat.png",
    message: "I love horror movies from the 80s, any suggestions?",
    chromium: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    timeout: 120000,
    user: null,
    password: null,
    guided: "0",
    "guided-message": "Hi! What should I watch tonight?",
  };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args)) throw new Error(`unknown option --${key}`);
    args[key] = key === "timeout" ? Number(argv[i + 1]) : argv[i + 1];
  }
  return args;
}

const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> [link](javascript:window.__xss=3)';

async function lastAssistantText(page) {
  return page.evaluate(() => {
    const bots = document.querySelectorAll("#chat .message-row.bot-row, #chat [data-testid='bot']");
    if (!bots.length) return "";
    return bots[bots.length - 1].innerText.trim();
  });
}

async function countBotMessages(page) {
  return page.evaluate(() => document.querySelectorAll("#chat .message-row.bot-row, #chat [data-testid='bot']").length);
}

async function sendAndWatch(page, text, timeout) {
  return actAndWatch(
    page,
    async () => {
      await page.locator("#msg textarea").fill(text);
      await page.locator("#send").click();
    },
    timeout,
  );
}

// Run `act` (which sends a message) and watch the newest bot message until the status reports the turn.
async function actAndWatch(page, act, timeout) {
  const before = await countBotMessages(page);
  // Record every state of the newest bot message inside the page (a MutationObserver sees each streamed
  // update even when a fast reply finishes between two of the polls below).
  await page.evaluate((nBefore) => {
    window.__replyStates = [];
    const sel = "#chat .message-row.bot-row, #chat [data-testid='bot']";
    const record = () => {
      const bots = document.querySelectorAll(sel);
      if (bots.length <= nBefore) return;
      const t = bots[bots.length - 1].innerText.trim();
      const states = window.__replyStates;
      if (t && t !== "…" && states[states.length - 1] !== t) states.push(t);
    };
    if (window.__replyObserver) window.__replyObserver.disconnect();
    window.__replyObserver = new MutationObserver(record);
    window.__replyObserver.observe(document.querySelector("#chat"), {
      subtree: true,
      childList: true,
      characterData: true,
    });
  }, before);
  await act();
  const seen = [];
  const t0 = Date.now();
  let firstText = null;
  // Poll the last bot message until the status line reports the finished turn.
  while (Date.now() - t0 < timeout) {
    const n = await countBotMessages(page);
    if (n > before) {
      const t = await lastAssistantText(page);
      if (t && t !== "…" && (seen.length === 0 || seen[seen.length - 1] !== t)) {
        seen.push(t);
        if (firstText === null) firstText = (Date.now() - t0) / 1000;
      }
    }
    const status = await page.locator("#status").innerText();
    if (n > before && /^turn \d+/.test(status.trim())) break;
    if (/failed/.test(status)) throw new Error(`turn failed: ${status}`);
    await page.waitForTimeout(30);
  }
  const final = await lastAssistantText(page);
  if (!seen.length || seen[seen.length - 1] !== final) seen.push(final);
  const observed = await page.evaluate(() => {
    window.__replyObserver.disconnect();
    return window.__replyStates;
  });
  // Streamed = the reply was seen in several growing states (by the observer or by polling).
  const states = observed.length > seen.length ? observed : seen;
  return { seen: states, final, firstText, totalS: (Date.now() - t0) / 1000 };
}

async function main() {
  const args = parseArgs(process.argv);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "crwalker-chromium-"));
  // A fresh profile per run (playwright passes it to chromium as --user-data-dir).
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1400, height: 1000 },
    httpCredentials: args.user ? { username: args.user, password: args.password } : undefined,
  });
  const result = { ok: false, url: args.url, screenshot: args.out };
  try {
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(args.url, { waitUntil: "domcontentloaded", timeout: args.timeout });
    await page.locator("#msg textarea").waitFor({ timeout: args.timeout });

    const turn = await sendAndWatch(page, args.message, args.timeout);
    result.reply = turn.final;
    result.reply_observations = turn.seen.length;
    result.first_text_s = turn.firstText;
    result.turn_s = turn.totalS;
    result.streamed = turn.seen.length >= 2;
    await page.locator("#tree svg.reasoning-tree").waitFor({ timeout: args.timeout });
    result.tree_nodes = await page.locator("#tree svg .tree-node").count();
    result.act = (await page.locator("#act code").innerText()).slice(0, 200);
    result.movie_cards = await page.locator("#cards .movie-card").count();
    result.first_card = result.movie_cards ? (await page.locator("#cards .movie-card .title").first().innerText()) : null;
    await page.screenshot({ path: args.out, fullPage: true });

    // A hostile message must be displayed as text: no injected element, no script executed.
    const xss = await sendAndWatch(page, XSS, args.timeout);
    result.xss_shown_as_text = (await page.locator("#chat").innerText()).includes("onerror=");
    result.xss_executed = await page.evaluate(() => window.__xss !== undefined);
    result.xss_injected_img = await page.locator("#chat img[src='x']").count();
    result.xss_turn_s = xss.totalS;
    result.page_errors = consoleErrors;
    let guidedOk = true;
    if (args.guided === "1") {
      guidedOk = false;
      await page.locator("#new-conversation").click();
      await page.waitForFunction(() => document.querySelectorAll("#chat .message-row").length === 0, null, {
        timeout: args.timeout,
      });
      await page.locator("#guided input[type=checkbox]").check();
      const ask = await sendAndWatch(page, args["guided-message"], args.timeout);
      await page.locator("#answer-yes").waitFor({ state: "visible", timeout: args.timeout });
      result.guided_reply = ask.final;
      result.guided_question = (await page.locator("#question").innerText()).trim();
      result.guided_act = (await page.locator("#act code").innerText()).slice(0, 200);
      result.guided_no_button = await page.locator("#answer-no").isVisible();
      await page.screenshot({ path: args.out.replace(/\.png$/, "") + "-guided.png", fullPage: true });
      const after = await actAndWatch(page, () => page.locator("#answer-yes").click(), args.timeout);
      result.after_yes_reply = after.final;
      result.after_yes_user = await page.evaluate(() => {
        const users = document.querySelectorAll("#chat .message-row.user-row, #chat [data-testid='user']");
        return users.length ? users[users.length - 1].innerText.trim() : "";
      });
      result.after_yes_status = (await page.locator("#status").innerText()).trim();
      result.after_yes_act = (await page.locator("#act code").innerText()).slice(0, 200);
      result.after_yes_question = (await page.locator("#question").innerText()).trim();
      result.after_yes_cards = await page.locator("#cards .movie-card").count();
      guidedOk =
        /asks about/.test(result.guided_question) &&
        result.guided_no_button &&
        result.after_yes_user === "Yes" &&
        result.after_yes_reply.length > 0 &&
        /^turn 1\b/.test(result.after_yes_status);
      result.guided_ok = guidedOk;
    }
    result.ok =
      result.reply.length > 0 &&
      result.streamed &&
      result.tree_nodes >= 1 &&
      result.movie_cards >= 1 &&
      result.xss_shown_as_text &&
      !result.xss_executed &&
      result.xss_injected_img === 0 &&
      guidedOk;
  } catch (e) {
    result.error = String(e && e.stack ? e.stack : e);
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main();
