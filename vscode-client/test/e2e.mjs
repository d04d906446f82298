// Drives VS Code (code-server) in Debian's Chromium through playwright-core, the way a
// user would. tests/test_vscode_e2e.py starts code-server with the extension installed,
// runs this script and checks the results (and the file on disk). Scenarios (E2E_SCENARIO):
// - suggest (default): open client.py, type `, timeout=5` into the first fetch call, wait
//   for ripple's diff preview at the second call, Tab (jump), Tab (accept), take the third
//   call from ghost text with Tab, save; then type `, retries=2`, jump to the preview, take
//   two words of it (Ctrl+Right), go to the next suggestion and dismiss it (Esc); read the
//   server's feedback counts ("ripple: Show server status").
// - not-installed: ripple.pythonPath has no ripple; read the error message.
//
// Environment: E2E_URL (code-server), E2E_TOOLS (the folder with playwright-core),
// E2E_CHROMIUM (the browser), E2E_ARTIFACTS (screenshots go there), E2E_MARKER (an extra
// browser flag, so the test can find and end this browser's processes).
// Every wait is bounded; any failure leaves failure.png in E2E_ARTIFACTS and exits 1, and
// the last line of output is always `RESULT {json}`.

import { createRequire } from 'node:module';
import * as path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
};

const url = env('E2E_URL');
const artifacts = env('E2E_ARTIFACTS');
const require = createRequire(path.join(env('E2E_TOOLS'), 'package.json'));
const { chromium } = require('playwright-core');

const started = Date.now();
const steps = [];
function step(name) {
  const t = (Date.now() - started) / 1000;
  steps.push({ name, t });
  console.log(`[${t.toFixed(1)}s] ${name}`);
}

const TYPED = ', timeout=5';
// 0-based lines of the three calls in the sample client.py (see the Python test).
const CALLS = [8, 12, 16];

/** Thrown by a probe to stop waiting at once. */
class Fatal extends Error {}

/** Poll `probe` (returns a truthy value when done) every 100 ms for at most `ms`. */
async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) {
        return last;
      }
    } catch (err) {
      if (err instanceof Fatal) {
        throw err;
      }
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms / 1000}s waiting for ${what} (last: ${String(last)})`);
}

/** The texts that decorations inject after code (ripple's preview) in the visible editor. */
function injectedTexts(page) {
  return page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('.monaco-editor .view-lines span')) {
      const content = getComputedStyle(el, '::after').content;
      if (content && content !== 'none' && content !== 'normal') {
        out.push(content.replace(/^"|"$/g, ''));
      }
    }
    return out;
  });
}

/** The 0-based lines that show ripple's gutter marker (matched to line numbers by height). */
function markerLines(page) {
  return page.evaluate(() => {
    const numbers = [...document.querySelectorAll('.editor-instance .monaco-editor .line-numbers')].map(
      (n) => ({ line: Number(n.textContent) - 1, top: n.getBoundingClientRect().top }),
    );
    const lines = [];
    for (const el of document.querySelectorAll('.editor-instance .monaco-editor .margin *')) {
      if (!getComputedStyle(el).backgroundImage.includes('suggestion.svg')) {
        continue;
      }
      const top = el.getBoundingClientRect().top;
      const near = numbers.filter((n) => Math.abs(n.top - top) < 4);
      if (near.length === 1 && !lines.includes(near[0].line)) {
        lines.push(near[0].line);
      }
    }
    return lines.sort((a, b) => a - b);
  });
}

/** The visible editor's text (VS Code renders spaces as no-break spaces). */
async function editorText(editor) {
  return (await editor.locator('.view-lines').innerText()).replace(/\u00a0/g, ' ');
}

/** How many times `text` occurs in the visible editor's text. */
async function occurrences(editor, text) {
  return (await editorText(editor)).split(text).length - 1;
}

async function cursor(page) {
  const text = await page.locator('[id="status.editor.selection"]').first().innerText();
  const m = /Ln (\d+), Col (\d+)/.exec(text);
  return m ? { line: Number(m[1]) - 1, column: Number(m[2]) - 1 } : undefined;
}

async function rippleStatus(page) {
  const el = page.locator('[aria-label^="ripple status: "]').first();
  return (await el.count()) ? el.getAttribute('aria-label') : undefined;
}

/** Put the cursor just before the closing parenthesis of the call on `line` (0-based). */
async function gotoCall(page, line) {
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.keyboard.press('Control+Home');
    for (let i = 0; i < line; i++) {
      await page.keyboard.press('ArrowDown');
    }
    await page.keyboard.press('End');
    const end = await until(`the cursor on line ${line + 1}`, 5000, async () => {
      const c = await cursor(page);
      return c?.line === line ? c : undefined;
    }).catch(() => undefined);
    if (end === undefined) {
      continue;
    }
    await page.keyboard.press('ArrowLeft');
    const placed = await until('the cursor before ")"', 5000, async () => {
      const c = await cursor(page);
      return c?.line === line && c.column === end.column - 1;
    }).catch(() => false);
    if (placed) {
      return;
    }
  }
  throw new Error(`could not put the cursor before the ")" on line ${line + 1}`);
}

/** Run a command by its title from the command palette (F1). */
async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const palette = page.locator('.quick-input-widget input');
  await palette.waitFor({ timeout: 10_000 });
  await palette.fill(`>${title}`);
  await page
    .locator('.quick-input-list .monaco-list-row', { hasText: title })
    .first()
    .waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
}

const browser = await chromium.launch({
  executablePath: env('E2E_CHROMIUM'),
  headless: true,
  timeout: 60_000,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    env('E2E_MARKER'),
  ],
});
step('chromium started');
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
page.setDefaultTimeout(30_000);
const consoleErrors = [];
page.on('console', (msg) => {
  if (msg.type() === 'error') {
    consoleErrors.push(msg.text());
  }
});
const result = { steps };
let failed;
try {
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
  await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  step('workbench loaded');

  // Open client.py from the explorer.
  const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'client.py' }).first();
  await row.waitFor({ timeout: 60_000 });
  await row.click();
  const editor = page.locator('.editor-instance .monaco-editor').first();
  await editor.locator('.view-lines', { hasText: 'def third' }).waitFor({ timeout: 30_000 });
  step('client.py open');

  if (process.env.E2E_SCENARIO === 'not-installed') {
    await notInstalled();
  } else {
    await suggest(editor);
  }
} catch (err) {
  failed = err;
  console.log(`FAILED: ${err?.stack ?? err}`);
  await page.screenshot({ path: path.join(artifacts, 'failure.png') }).catch(() => undefined);
  result.error = String(err?.message ?? err);
} finally {
  result.consoleErrors = consoleErrors.slice(-20);
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close().catch(() => undefined);
}
process.exit(failed ? 1 : 0);

/** ripple.pythonPath has no ripple: the error message, and the status bar, say so. */
async function notInstalled() {
  const toast = page.locator('.notification-toast', { hasText: 'not installed' }).first();
  await toast.waitFor({ timeout: 60_000 });
  result.message = (await toast.innerText()).replace(/\u00a0/g, ' ');
  result.status = await until('the status bar to show the problem', 10_000, async () => {
    const label = await rippleStatus(page);
    return label?.startsWith('ripple status: problem') ? label : undefined;
  });
  step(`message: ${result.message.split('\n').find((l) => l.includes('not installed'))}`);
  await page.screenshot({ path: path.join(artifacts, 'not-installed.png') });
}

/** Type, preview elsewhere, Tab Tab, ghost text, save; partial accept, next, Esc. */
async function suggest(editor) {
  // The extension is active and its server answered the initialize request.
  result.statusBefore = await until('ripple\'s server to run (status bar)', 90_000, async () => {
    const label = await rippleStatus(page);
    if (label?.startsWith('ripple status: problem')) {
      throw new Fatal(`ripple reports a problem: ${label}`);
    }
    return label?.startsWith('ripple status: running') ? label : undefined;
  });
  step(`ripple running (${result.statusBefore})`);

  // Type into the first call like a user.
  await editor.locator('.view-lines').click();
  await gotoCall(page, CALLS[0]);
  await page.keyboard.type(TYPED, { delay: 40 });
  step('typed into the first call');

  // The diff preview of the edit at the second call, with its gutter marker.
  await until('ripple\'s preview of ", timeout=5"', 20_000, async () =>
    (await injectedTexts(page)).some((t) => t.includes('timeout=5')),
  );
  result.markers = await until('ripple\'s gutter markers', 10_000, async () => {
    const lines = await markerLines(page);
    return lines.length > 0 ? lines : undefined;
  });
  result.statusWithSuggestion = await until('the status bar to count the suggestions', 10_000, async () => {
    const label = await rippleStatus(page);
    return label && !label.endsWith('; 0 suggestions') ? label : undefined;
  });
  step(`preview shown; markers on lines ${result.markers.map((l) => l + 1).join(', ')}`);
  // For the README: the hover over the preview explains the suggestion (best effort).
  const preview = await page.evaluateHandle(() =>
    [...document.querySelectorAll('.editor-instance .view-lines span')].find((el) =>
      getComputedStyle(el, '::after').content.includes('timeout=5'),
    ),
  );
  const box = await preview.asElement()?.boundingBox();
  if (box) {
    await page.mouse.move(box.x - 40, box.y + box.height / 2);
    await page
      .locator('.monaco-hover', { hasText: 'ripple' })
      .first()
      .waitFor({ state: 'visible', timeout: 5000 })
      .catch(() => console.log('(no hover over the preview)'));
  }
  await page.screenshot({ path: path.join(artifacts, 'suggestion.png') });
  await page.mouse.move(5, 700);

  // Tab jumps to the suggestion, Tab again accepts it.
  await page.keyboard.press('Tab');
  result.afterJump = await until('the cursor to jump to the second call', 10_000, async () => {
    const c = await cursor(page);
    return c?.line === CALLS[1] ? c : undefined;
  });
  step(`Tab jumped to line ${result.afterJump.line + 1}, column ${result.afterJump.column + 1}`);
  await page.keyboard.press('Tab');
  await until('the second call to change in the editor', 10_000, async () =>
    (await occurrences(editor, 'timeout=5)')) === 2,
  );
  // The cursor ends after the inserted text.
  result.afterAccept = await until('the cursor after the accepted text', 10_000, async () => {
    const c = await cursor(page);
    return c?.line === CALLS[1] && c.column === result.afterJump.column + TYPED.length ? c : undefined;
  });
  step('Tab accepted the edit');

  // The third call: ghost text at the cursor, accepted with Tab.
  await gotoCall(page, CALLS[2]);
  // "Trigger Inline Suggestion" from the command palette (its Alt+\\ does not reach
  // code-server through headless Chromium).
  await runCommand(page, 'Trigger Inline Suggestion');
  const ghost = editor.locator('.ghost-text-decoration, .ghost-text, .suggest-preview-text');
  result.ghostText = await until('ghost text at the third call', 20_000, async () => {
    const text = (await ghost.allInnerTexts()).join('').replace(/\u00a0/g, ' ');
    return text.includes('timeout=5') ? text : undefined;
  });
  step(`ghost text shown: ${JSON.stringify(result.ghostText)}`);
  await page.keyboard.press('Tab');
  await until('the third call to change in the editor', 10_000, async () =>
    (await occurrences(editor, 'timeout=5)')) === 3,
  );
  step('Tab accepted the ghost text');

  await page.keyboard.press('Control+s');
  await until('the editor to be saved', 10_000, async () =>
    (await page.locator('.tabs-container .tab.dirty').count()) === 0,
  );
  step('saved');

  // Another argument typed into the first call: the suggestion at the second call is
  // taken word by word (Ctrl+Right), the one at the third is rejected with Esc.
  await gotoCall(page, CALLS[0]);
  await page.keyboard.type(', retries=2', { delay: 40 });
  await until('ripple\'s preview of ", retries=2"', 20_000, async () =>
    (await injectedTexts(page)).some((t) => t.includes('retries=2')),
  );
  await until('the status bar to count the suggestions', 10_000, async () =>
    !(await rippleStatus(page))?.endsWith('; 0 suggestions'),
  );
  step('second suggestion shown');
  await page.keyboard.press('Tab');
  await until('the cursor to jump to the second call', 10_000, async () =>
    (await cursor(page))?.line === CALLS[1],
  );
  await page.keyboard.press('Control+ArrowRight');
  await page.keyboard.press('Control+ArrowRight');
  result.partial = await until('", retries" accepted word by word', 10_000, async () => {
    const text = await editorText(editor);
    const rest = await injectedTexts(page);
    return text.includes('timeout=5, retries)') && rest.some((t) => t === '=2') ? rest : undefined;
  });
  step('Ctrl+Right, Ctrl+Right accepted ", retries"');
  await runCommand(page, 'ripple: Next suggestion');
  await until('the preview at the third call', 10_000, async () =>
    (await injectedTexts(page)).some((t) => t.includes('retries=2')),
  );
  await page.keyboard.press('Escape');
  await until('Esc to remove the preview', 10_000, async () =>
    (await injectedTexts(page)).length === 0 &&
    (await rippleStatus(page))?.endsWith('; 0 suggestions'),
  );
  step('next suggestion, Esc dismissed it');

  // The server heard the feedback: "ripple: Show server status" reports its counts.
  await runCommand(page, 'ripple: Show server status');
  const toast = page.locator('.notification-toast', { hasText: 'files indexed' }).first();
  await toast.waitFor({ timeout: 15_000 });
  result.serverStatus = await toast.innerText();
  step(`server status: ${result.serverStatus.split('\n').find((l) => l.includes('indexed'))}`);
}
