// The admin web UI in headless Chromium (Debian's chromium, driven by playwright-core),
// against the real gateway and the real test OIDC provider. Driven by the e2e test
// `ui::a_reviewer_decides_in_the_browser`, which holds client calls and reads the lines this
// prints: READY, APPROVED <id>, DENIED <id>, DONE. Any failed check exits non-zero.
//
// Environment: AIRLOCK_UI (the admin listener URL), AIRLOCK_CHROMIUM (the browser),
// AIRLOCK_TEST_NODE_MODULES, AIRLOCK_SHOTS (where screenshots go), AIRLOCK_RAW (a raw value
// the conversation view must never show).
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.AIRLOCK_TEST_NODE_MODULES}/`);
const { chromium } = require('playwright-core');

const ui = process.env.AIRLOCK_UI;
const shots = process.env.AIRLOCK_SHOTS;
const raw = process.env.AIRLOCK_RAW;

function check(cond, what) {
  if (!cond) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
}

async function signIn(page, user) {
  await page.goto(`${ui}/ui`);
  check(page.url().endsWith('/ui/login'), `not signed in, /ui sends to the sign-in page (${page.url()})`);
  await page.click('a.button');
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  // The provider asks for consent once.
  if (!page.url().startsWith(ui)) await page.click('button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/ui' || u.pathname === '/ui/approvals' || u.pathname.startsWith('/ui/callback'));
}

const browser = await chromium.launch({ executablePath: process.env.AIRLOCK_CHROMIUM, args: ['--no-sandbox'] });
try {
  // Security in the browser: no sign-in, no page; a non-reviewer is refused after signing in.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    const r = await page.goto(`${ui}/ui/approvals`);
    check(page.url().endsWith('/ui/login'), 'the queue needs a sign-in');
    check((r.headers()['content-security-policy'] || '').includes("script-src 'self'"), 'CSP on the page');
    await page.screenshot({ path: `${shots}/login.png` });
    await signIn(page, 'mallory');
    await page.waitForLoadState('networkidle');
    const text = await page.textContent('body');
    check(text.includes('admin or a reviewer group'), `a non-reviewer is refused: ${text}`);
    await context.close();
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  await signIn(page, 'root');
  await page.waitForURL(`${ui}/ui`);
  console.log('READY');

  // The queue: the held call appears (live, without a reload), is approved in the browser.
  await page.goto(`${ui}/ui/approvals`);
  await page.waitForSelector('tr.approval', { timeout: 60000 });
  const first = page.locator('tr.approval').first();
  const firstId = await first.getAttribute('data-id');
  check(!(await page.content()).includes(raw), 'the queue shows no raw value');
  await page.screenshot({ path: `${shots}/approvals.png`, fullPage: true });
  await first.locator('input[name=reason]').first().fill('checked with the team');
  await first.locator('button.approve').click();
  await page.waitForSelector(`tr.decided[data-id="${firstId}"]`);
  console.log(`APPROVED ${firstId}`);

  // The next held call arrives while the page is open: the live list shows it; deny it.
  await page.waitForSelector(`tr.approval:not([data-id="${firstId}"])`, { timeout: 60000 });
  check(await page.locator('#approvals-live[data-updated]').count() === 1, 'the list was refreshed live');
  const second = page.locator('tr.approval').first();
  const secondId = await second.getAttribute('data-id');
  await second.locator('button.deny').scrollIntoViewIfNeeded();
  await second.locator('input[name=reason]').nth(1).fill('not this quarter');
  await second.locator('button.deny').click();
  await page.waitForSelector(`tr.decided[data-id="${secondId}"]`);
  console.log(`DENIED ${secondId}`);
  await page.screenshot({ path: `${shots}/approvals-decided.png`, fullPage: true });

  // The audit browser and the conversation of the approved request.
  await page.goto(`${ui}/ui/audit?subject=alice&decision=require_approval`);
  await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });
  const links = page.locator('table a');
  check(await links.count() >= 1, 'the held requests are in the audit log');
  await links.last().click();
  await page.waitForSelector('.chat');
  const html = await page.content();
  check(!html.includes(raw), 'the conversation view shows no raw value');
  check(await page.locator('mark.masked').count() >= 1, 'masked values are marked');
  check((await page.textContent('#record-verified')).includes('verifies'), 'the record verifies');
  await page.screenshot({ path: `${shots}/conversation.png`, fullPage: true });

  await page.goto(`${ui}/ui/policy`);
  check((await page.textContent('body')).includes('codename-review'), 'the policy page lists the rules');
  await page.screenshot({ path: `${shots}/policy.png`, fullPage: true });
  await page.goto(`${ui}/ui`);
  check((await page.textContent('body')).includes('Requests per minute'), 'the overview');
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  // Keyboard: the first link is reachable with Tab.
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement && document.activeElement.tagName === 'A'), 'keyboard focus reaches the navigation');
  console.log('DONE');
} finally {
  await browser.close();
}
