// Laravel Echo's browser build in headless Chromium (playwright-core), against `surge:serve` of
// the Laravel test app with its BrowserHandler: the page /echo loads pusher-js and laravel-echo
// from the server, subscribes to `orders` and (through Laravel's /broadcasting/auth) to
// `private-orders.<user>`, and must show the broadcasts that artisan fires meanwhile.
//
//   node tests/browser/echo.mjs http://127.0.0.1:6001 token-alice 1 [screenshot.png]
//
// Prints "ready <socket id>" once subscribed, then waits (up to 20 s) for one broadcast on each
// channel. Exits 0 when everything held, 1 (with the reason on stderr) otherwise. CHROMIUM
// overrides the browser's path (default /usr/bin/chromium, Debian's package).
import { launch } from './chromium.mjs';

const [base, token, user, screenshot] = process.argv.slice(2);
if (!base || !token || !user) {
  console.error('usage: node tests/browser/echo.mjs <server url> <token> <user id> [screenshot.png]');
  process.exit(2);
}

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

const browser = await launch();
let status = 0;
let page;
try {
  const errors = [];
  page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
  page.on('response', (r) => r.status() >= 400 && errors.push(`${r.status()} for ${r.url()}`));
  await page.goto(`${base}/echo?token=${encodeURIComponent(token)}&user=${encodeURIComponent(user)}`);
  check(await page.evaluate(() => typeof Echo.default === 'function' && typeof Pusher === 'function'), 'the page loaded the browser builds of laravel-echo and pusher-js');
  await page.locator('#status', { hasText: 'subscribed as' }).waitFor();
  const socketId = await page.evaluate(() => echo.socketId());
  check(/^\d+\.\d+$/.test(socketId), `subscribed to orders and private-orders.${user} as ${socketId}`);
  console.log(`ready ${socketId}`);

  await page.waitForFunction(() => window.received.length >= 2, null, { timeout: 20_000 });
  await page.waitForTimeout(300); // anything more (a broadcast for another user) would come now
  const received = await page.evaluate(() => window.received);
  const texts = await page.locator('#events li').allTextContents();
  console.log(`received: ${JSON.stringify(received)}`);
  check(received.some((e) => e.listener === 'orders' && e.message === 'public from Laravel'), 'the public broadcast arrived');
  check(received.some((e) => e.listener === 'private' && e.message === 'private from Laravel'), 'the private broadcast arrived');
  check(texts.includes('orders: public from Laravel') && texts.includes('private: private from Laravel'), 'the page shows both');
  check(received.length === 2, 'nothing else arrived (not the broadcast to another user)');
  check(errors.length === 0, `no errors in the page (${errors.join('; ')})`);

  // Laravel's routes/channels.php decides: this user may not have another user's channel.
  const other = Number(user) + 1;
  const refused = await page.evaluate((other) => new Promise((resolve) => {
    echo.private(`orders.${other}`).error((e) => resolve(e));
    setTimeout(() => resolve(null), 5000);
  }), other);
  check(refused?.status === 403, `Laravel refused private-orders.${other} (${JSON.stringify(refused)})`);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  status = 1;
} finally {
  if (screenshot && page) await page.screenshot({ path: screenshot }).catch(() => {});
  await browser.close();
}
process.exit(status);
