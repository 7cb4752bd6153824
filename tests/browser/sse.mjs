// Server-sent events in a real browser: a headless Chromium page opens an EventSource on a
// stream that a Surge request callback writes with $response->write(), and must get its events
// in order, as the browser's own SSE parser reads the chunks.
//
//   node tests/browser/sse.mjs http://127.0.0.1:PORT/stream
//
// Exits 0 when the events arrived, 1 (with the reason on stderr) otherwise.
import { launch } from './chromium.mjs';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node tests/browser/sse.mjs <stream url>');
  process.exit(2);
}
const browser = await launch();
try {
  const page = await browser.newPage();
  // Same origin as the stream (EventSource across origins would need CORS headers).
  await page.goto(new URL('/page', url).href);
  const events = await page.evaluate((src) => new Promise((resolve, reject) => {
    const got = [];
    const source = new EventSource(src);
    source.onmessage = (e) => {
      got.push(e.data);
      if (e.data === 'end') { source.close(); resolve(got); }
    };
    source.onerror = () => { source.close(); reject(new Error(`stream failed after ${JSON.stringify(got)}`)); };
    setTimeout(() => reject(new Error(`timed out with ${JSON.stringify(got)}`)), 10_000);
  }), url);
  if (JSON.stringify(events) !== JSON.stringify(['1', '2', 'end'])) throw new Error(`events: ${JSON.stringify(events)}`);
  console.log(`ok: the page got ${events.join(', ')}`);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
