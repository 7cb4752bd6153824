// A form with files, sent by a real browser: headless Chromium fills a multipart form (a text
// field, a file, two files in one `multiple` input, a file input left empty), submits it, and
// prints what the request callback answered: $request->post and $request->files as JSON.
//
//   node tests/browser/upload.mjs http://127.0.0.1:PORT/upload-form
//
// Exits 0 with the answer on stdout, 1 (with the reason on stderr) if the page did not load or
// the answer is not JSON.
import { launch } from './chromium.mjs';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node tests/browser/upload.mjs <form url>');
  process.exit(2);
}
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.fill('input[name=title]', 'héllo & co');
  const file = (name, text) => ({ name, mimeType: 'text/plain', buffer: Buffer.from(text) });
  await page.setInputFiles('input[name=doc]', file('notes.txt', 'the notes'));
  await page.setInputFiles('input[name="photos[]"]', [file('a.txt', 'first'), file('b.txt', 'second')]);
  await Promise.all([page.waitForNavigation(), page.click('button')]);
  const answer = await page.evaluate(() => document.body.innerText);
  console.log(JSON.stringify(JSON.parse(answer)));
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
