// The chat example as a person uses it: two headless Chromium pages join the room, one sends a
// message full of HTML, the other must show it as the literal text that was typed.
//
//   node tests/browser/chat.mjs http://127.0.0.1:9501/ [screenshot.png]
//
// Exits 0 when everything held, 1 (with the reason on stderr) otherwise. CHROMIUM overrides the
// browser's path (default /usr/bin/chromium, Debian's package).
import { launch } from './chromium.mjs';

const [url, screenshot] = process.argv.slice(2);
if (!url) {
  console.error('usage: node tests/browser/chat.mjs <chat url> [screenshot.png]');
  process.exit(2);
}
const TEXT = '<b>hi</b> & <script>x</script> <img src=x onerror="window.pwned=1">';
const TIMEOUT = 10_000;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

async function join(browser, name, errors) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  await page.goto(`${url}?name=${encodeURIComponent(name)}`);
  await page.locator('#status', { hasText: `you are ${name}` }).waitFor();
  return page;
}

// What the message list holds: the texts as a reader sees them, and the elements that would
// exist only if the HTML had been interpreted.
function messages(page) {
  return page.evaluate(() => ({
    texts: [...document.querySelectorAll('#messages .msg .text')].map((e) => e.textContent),
    injected: document.querySelectorAll('#messages b, #messages script, #messages img').length,
    pwned: window.pwned === 1,
  }));
}

const browser = await launch();
let status = 0;
try {
  const errors = [];
  const alice = await join(browser, 'Alice', errors);
  const bob = await join(browser, 'Bob', errors);
  await alice.locator('#users li', { hasText: 'Bob' }).waitFor();
  await alice.locator('.notice', { hasText: 'Bob joined' }).waitFor();
  check(true, 'Alice sees Bob join and in the list of names');
  check((await bob.locator('#users li').allTextContents()).join(',') === 'Alice,Bob', 'Bob sees Alice and himself online');

  await alice.locator('#input').fill(TEXT);
  await alice.locator('#send').click();
  await bob.locator('.msg .text').first().waitFor();
  const seen = await messages(bob);
  check(seen.texts.length === 1 && seen.texts[0] === TEXT, `Bob shows Alice's message as the text she typed: ${JSON.stringify(seen.texts)}`);
  check(seen.injected === 0 && !seen.pwned, 'the HTML in it is escaped: no element was created, no script ran');
  check(await bob.locator('.msg .meta .name').first().textContent() === 'Alice', "the message carries Alice's name");
  check((await bob.locator('.msg .meta .time').first().textContent()).match(/\d/) !== null, 'and a time');

  // The chat server turns websocket_compression on: Chromium negotiates permessage-deflate, and a
  // long message goes both ways compressed.
  const extensions = await alice.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(location.href.replace(/^http/, 'ws'));
    ws.onopen = () => { resolve(ws.extensions); ws.close(); };
    ws.onerror = () => reject(new Error('a second WebSocket did not open'));
  }));
  check(extensions.startsWith('permessage-deflate'), `Chromium negotiated compression: "${extensions}"`);
  const LONG = 'a long line of chat, said again and again. '.repeat(40); // the input takes 2000
  await bob.locator('#input').fill(LONG);
  await bob.locator('#send').click();
  await alice.locator('.msg .text', { hasText: 'said again and again' }).waitFor();
  const long = (await messages(alice)).texts;
  check(long.length === 2 && long[1] === LONG, `a ${LONG.length}-byte message arrives whole`);

  const own = await messages(alice);
  check(own.texts.length === 2 && own.texts[0] === TEXT && own.injected === 0, 'Alice sees her own message once, as typed');
  check(await alice.locator('.msg.mine').count() === 1, 'marked as hers');
  check(await alice.locator('#input').inputValue() === '', 'and the input is cleared');

  if (screenshot) {
    await bob.locator('#input').fill('Hello Alice!');
    await bob.locator('#send').click();
    await alice.locator('.msg .text', { hasText: 'Hello Alice!' }).waitFor();
    await alice.setViewportSize({ width: 900, height: 560 });
    await alice.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
  }

  await bob.context().close();
  await alice.locator('.notice', { hasText: 'Bob left' }).waitFor();
  check((await alice.locator('#users li').allTextContents()).join(',') === 'Alice', 'when Bob leaves, Alice is told and the list shrinks');
  check(errors.length === 0, `no JavaScript errors ${errors.join('; ')}`);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
