// The trigger side of surge-load fanout for a Pusher-protocol server (soketi): listens on
// 127.0.0.1:PORT and answers what bench/servers/fanout.php answers, through the server's HTTP API.
//   GET /members                 -> subscription_count of channel "all" (signed channel info)
//   GET /trigger?seq=S&count=C   -> events "m" on "all" with data "#S#" padded with x to 100 bytes,
//                                   in signed POST /apps/ID/batch_events of at most BATCH events;
//                                   answers C * members (deliveries queued)
// Usage: node pusher-trigger.js LISTEN_PORT API_PORT [APP_ID KEY SECRET BATCH]; prints "ready PORT".
// With APP_ID "les", API_PORT is laravel-echo-server's and only /members is answered (channel
// "bench", from GET /apps/les/channels/bench?auth_key=bench-key).
'use strict';
const http = require('http');
const crypto = require('crypto');
const [listenPort, apiPort, appId = 'app-id', key = 'app-key', secret = 'app-secret', batch = '100'] =
    process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
let members = 0;

function signed(method, path, params, body) {
    const q = Object.assign({ auth_key: key, auth_timestamp: Math.floor(Date.now() / 1000), auth_version: '1.0' }, params);
    if (body) q.body_md5 = crypto.createHash('md5').update(body).digest('hex');
    const qs = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join('&');
    const sig = crypto.createHmac('sha256', secret).update(`${method}\n${path}\n${qs}`).digest('hex');
    return `${path}?${qs}&auth_signature=${sig}`;
}

function api(method, path, params, body) {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: apiPort, method, path: signed(method, path, params, body), agent,
            headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
            let data = '';
            res.on('data', (c) => (data += c));
            res.on('end', () => (res.statusCode === 200 ? resolve(data) : reject(new Error(`${res.statusCode} ${data}`))));
        });
        req.on('error', reject);
        req.end(body);
    });
}

function get(path) {
    return new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: apiPort, path, agent }, (res) => {
            let data = '';
            res.on('data', (c) => (data += c));
            res.on('end', () => (res.statusCode === 200 ? resolve(data) : reject(new Error(`${res.statusCode} ${data}`))));
        }).on('error', reject);
    });
}

const payload = (seq) => `#${seq}#`.padEnd(100, 'x');

async function handle(url) {
    const u = new URL(url, 'http://x');
    if (u.pathname === '/members' && appId === 'les') {
        // laravel-echo-server: its own API, channel "bench", client key "bench-key"; no trigger.
        const info = await get(`/apps/les/channels/bench?auth_key=bench-key`);
        return `${JSON.parse(info).subscription_count || 0}`;
    }
    if (u.pathname === '/members') {
        const info = JSON.parse(await api('GET', `/apps/${appId}/channels/all`, { info: 'subscription_count' }));
        members = info.subscription_count || 0;
        return `${members}`;
    }
    if (u.pathname === '/trigger') {
        const seq = Number(u.searchParams.get('seq') || 0);
        const count = Number(u.searchParams.get('count') || 1);
        for (let s = seq; s < seq + count; s += Number(batch)) {
            const batchEvents = [];
            for (let i = s; i < Math.min(seq + count, s + Number(batch)); i++) {
                batchEvents.push({ name: 'm', channel: 'all', data: payload(i) });
            }
            await api('POST', `/apps/${appId}/batch_events`, {}, JSON.stringify({ batch: batchEvents }));
        }
        return `${count * members}`;
    }
    throw new Error(`unknown path ${u.pathname}`);
}

// surge-load reads a plain body: no chunked encoding.
function reply(res, status, text) {
    const body = Buffer.from(text + '\n');
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': body.length, connection: 'close' }).end(body);
}

http.createServer((req, res) => {
    handle(req.url).then(
        (body) => reply(res, 200, body),
        (e) => reply(res, 500, String(e)),
    );
}).listen(Number(listenPort), '127.0.0.1', function () {
    console.log(`ready ${this.address().port}`);
});
