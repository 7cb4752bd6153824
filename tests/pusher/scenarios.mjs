// Real Pusher clients against Surge: pusher-js 8, laravel-echo 2 and the `pusher` server SDK.
// Usage: node scenarios.mjs <scenario>, with SURGE_PORT, PUSHER_APP_ID, PUSHER_KEY and
// PUSHER_SECRET set. Prints "ok <scenario>" and exits 0, or prints why and exits 1.
import crypto from 'node:crypto';
import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';

const port = Number(process.env.SURGE_PORT);
const appId = process.env.PUSHER_APP_ID;
const key = process.env.PUSHER_KEY;
const secret = process.env.PUSHER_SECRET;

const server = new PusherServer({ appId, key, secret, host: '127.0.0.1', port: String(port), useTLS: false });

const sign = (text, withSecret = secret) => crypto.createHmac('sha256', withSecret).update(text).digest('hex');

/** Signs subscriptions in node, as Laravel's /broadcasting/auth would; `user` for presence. */
function authorizer(user, withSecret = secret) {
  return {
    customHandler: ({ socketId, channelName }, callback) => {
      if (channelName.startsWith('presence-')) {
        const channelData = JSON.stringify({ user_id: user.id, user_info: { name: user.name } });
        callback(null, { auth: `${key}:${sign(`${socketId}:${channelName}:${channelData}`, withSecret)}`, channel_data: channelData });
      } else {
        callback(null, { auth: `${key}:${sign(`${socketId}:${channelName}`, withSecret)}` });
      }
    },
  };
}

const clientOptions = (user, withSecret) => ({
  wsHost: '127.0.0.1',
  wsPort: port,
  forceTLS: false,
  enabledTransports: ['ws'],
  cluster: 'mt1',
  disableStats: true,
  channelAuthorization: authorizer(user ?? { id: 1, name: 'One' }, withSecret),
});

const pusherClient = (user, withSecret) => new Pusher(key, clientOptions(user, withSecret));

const echo = (user, withSecret) =>
  new Echo({ broadcaster: 'pusher', key, Pusher, ...clientOptions(user, withSecret) });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits are made for PHP at full speed: SURGE_E2E_TIME_FACTOR (memcheck.sh: 6) stretches them.
const TIME_FACTOR = Number(process.env.SURGE_E2E_TIME_FACTOR || 1);

async function until(what, cond, timeout = 5000) {
  const end = Date.now() + timeout * TIME_FACTOR;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function connected(client) {
  const conn = client.pusher ? client.pusher.connection : client.connection;
  return until('connection', () => conn.state === 'connected');
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', (e) => reject(new Error(`subscription error ${JSON.stringify(e)}`)));
  });
}

const scenarios = {
  // pusher-js subscribes a public channel; the server SDK triggers on it; the socket id is ours.
  async public() {
    const client = pusherClient();
    await connected(client);
    assert(/^\d+\.\d+$/.test(client.connection.socket_id), `socket id ${client.connection.socket_id}`);
    const got = [];
    const channel = client.subscribe('news');
    channel.bind('headline', (data) => got.push(data));
    await subscribed(channel);
    await server.trigger('news', 'headline', { title: 'Surge speaks Pusher' });
    await until('the headline', () => got.length === 1);
    assert(eq(got[0], { title: 'Surge speaks Pusher' }), JSON.stringify(got));
    const echoClient = echo();
    const viaEcho = [];
    echoClient.channel('news').listen('.headline', (e) => viaEcho.push(e));
    await until('echo subscribed', () => echoClient.connector.pusher.channel('news')?.subscribed);
    await server.trigger('news', 'headline', { title: 'twice' });
    await until('both', () => got.length === 2 && viaEcho.length === 1);
    client.disconnect();
    echoClient.disconnect();
  },

  // Laravel Echo on a private channel with a correctly signed auth; a wrong secret is refused.
  async private() {
    const client = echo();
    const got = [];
    client.private('orders.1').listen('OrderShipped', (e) => got.push(e));
    await until('private subscribed', () => client.connector.pusher.channel('private-orders.1')?.subscribed);
    await server.trigger('private-orders.1', 'App\\Events\\OrderShipped', { id: 1 });
    await until('the private event', () => got.length === 1);
    assert(eq(got[0], { id: 1 }), JSON.stringify(got));

    const forger = echo({ id: 9, name: 'Mallory' }, 'not-the-secret');
    const errors = [];
    forger.private('orders.1').error((e) => errors.push(e));
    await until('the subscription error', () => errors.length === 1);
    assert(errors[0].status === 401 && errors[0].type === 'AuthError', JSON.stringify(errors));
    const channel = forger.connector.pusher.channel('private-orders.1');
    assert(!channel.subscribed, 'the forged subscription must not succeed');
    await server.trigger('private-orders.1', 'App\\Events\\OrderShipped', { id: 2 });
    await until('the second event', () => got.length === 2);
    const leaked = [];
    channel.bind('App\\Events\\OrderShipped', (e) => leaked.push(e));
    await sleep(200);
    assert(leaked.length === 0, 'a refused subscriber received events');
    const info = await (await server.get({ path: '/channels/private-orders.1', params: { info: 'subscription_count' } })).json();
    assert(eq(info, { occupied: true, subscription_count: 1 }), JSON.stringify(info));
    client.disconnect();
    forger.disconnect();
  },

  // Presence: user 1, then user 2 in two tabs: user 1 sees one joining and one leaving.
  async presence() {
    const one = echo({ id: 1, name: 'One' });
    let here = null;
    const joining = [];
    const leaving = [];
    one.join('room.1')
      .here((users) => (here = users))
      .joining((u) => joining.push(u))
      .leaving((u) => leaving.push(u));
    await until('here', () => here !== null);
    assert(eq(here, [{ name: 'One' }]), `here ${JSON.stringify(here)}`);

    const tabA = echo({ id: 2, name: 'Two' });
    let hereA = null;
    tabA.join('room.1').here((users) => (hereA = users));
    await until('tab A here', () => hereA !== null);
    assert(hereA.length === 2, `tab A here ${JSON.stringify(hereA)}`);
    await until('joining', () => joining.length === 1);
    assert(eq(joining[0], { name: 'Two' }), JSON.stringify(joining));

    const tabB = echo({ id: 2, name: 'Two' });
    let hereB = null;
    tabB.join('room.1').here((users) => (hereB = users));
    await until('tab B here', () => hereB !== null);
    assert(hereB.length === 2, `tab B sees two users, not three: ${JSON.stringify(hereB)}`);
    const users = await (await server.get({ path: '/channels/presence-room.1/users' })).json();
    assert(eq(users, { users: [{ id: '1' }, { id: '2' }] }), JSON.stringify(users));
    const counts = await (await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
    assert(eq(counts, { channels: { 'presence-room.1': { user_count: 2 } } }), JSON.stringify(counts));

    tabA.disconnect();
    await sleep(300);
    assert(leaving.length === 0 && joining.length === 1, `one tab left: ${JSON.stringify({ joining, leaving })}`);
    tabB.leave('room.1');
    await until('leaving', () => leaving.length === 1);
    assert(eq(leaving[0], { name: 'Two' }), JSON.stringify(leaving));
    one.disconnect();
    tabB.disconnect();
  },

  // Whispers (client events) reach the others on the channel, never the sender.
  async whisper() {
    const [a, b] = [echo({ id: 1, name: 'A' }), echo({ id: 2, name: 'B' })];
    const gotA = [];
    const gotB = [];
    const chA = a.private('chat.1').listenForWhisper('typing', (e) => gotA.push(e));
    b.private('chat.1').listenForWhisper('typing', (e) => gotB.push(e));
    await until('both subscribed', () =>
      a.connector.pusher.channel('private-chat.1')?.subscribed && b.connector.pusher.channel('private-chat.1')?.subscribed);
    chA.whisper('typing', { name: 'A' });
    await until('the whisper', () => gotB.length === 1);
    assert(eq(gotB[0], { name: 'A' }), JSON.stringify(gotB));
    await sleep(200);
    assert(gotA.length === 0, 'the sender got its own whisper');

    // On a presence channel the receiver learns who whispered.
    const raw = [];
    const pa = pusherClient({ id: 1, name: 'A' });
    const pb = pusherClient({ id: 2, name: 'B' });
    const ca = pa.subscribe('presence-chat.2');
    const cb = pb.subscribe('presence-chat.2');
    cb.bind('client-typing', (data, meta) => raw.push([data, meta]));
    await Promise.all([subscribed(ca), subscribed(cb)]);
    ca.trigger('client-typing', { n: 1 });
    await until('the presence whisper', () => raw.length === 1);
    assert(eq(raw[0], [{ n: 1 }, { user_id: '1' }]), JSON.stringify(raw));

    // Past the rate limit (10 a second by default) the sender gets error 4301.
    const errors = [];
    pa.connection.bind('error', (e) => errors.push(e));
    for (let i = 0; i < 15; i++) ca.trigger('client-typing', { n: i });
    await until('error 4301', () => errors.some((e) => e.data?.code === 4301));
    await sleep(200);
    assert(raw.length <= 11, `rate limit let ${raw.length} through`);
    for (const c of [a, b]) c.disconnect();
    for (const c of [pa, pb]) c.disconnect();
  },

  // The server SDK: several channels, socket_id exclusion, batches, channel queries.
  async api() {
    const [a, b] = [pusherClient(), pusherClient()];
    const got = { a: [], b: [] };
    const subs = [];
    for (const [name, client] of [['a', a], ['b', b]]) {
      for (const channel of ['alpha', 'beta']) {
        const ch = client.subscribe(channel);
        ch.bind('ping', (data) => got[name].push([channel, data]));
        subs.push(subscribed(ch));
      }
    }
    await Promise.all(subs);
    await server.trigger(['alpha', 'beta'], 'ping', { n: 1 });
    await until('both channels, both clients', () => got.a.length === 2 && got.b.length === 2);
    await server.trigger('alpha', 'ping', { n: 2 }, { socket_id: a.connection.socket_id });
    await until('b gets n=2', () => got.b.length === 3);
    await sleep(200);
    assert(got.a.length === 2, `the excluded socket got it: ${JSON.stringify(got.a)}`);
    const batch = await server.triggerBatch([
      { channel: 'alpha', name: 'ping', data: { n: 3 } },
      { channel: 'beta', name: 'ping', data: { n: 4 } },
    ]);
    assert(batch.status === 200, `batch status ${batch.status}`);
    await until('the batch', () => got.a.length === 4 && got.b.length === 5);
    assert(eq(got.a.slice(2), [['alpha', { n: 3 }], ['beta', { n: 4 }]]), JSON.stringify(got.a));
    const channels = await (await server.get({ path: '/channels' })).json();
    assert(eq(Object.keys(channels.channels).sort(), ['alpha', 'beta']), JSON.stringify(channels));
    const info = await (await server.get({ path: '/channels/alpha', params: { info: 'subscription_count' } })).json();
    assert(eq(info, { occupied: true, subscription_count: 2 }), JSON.stringify(info));
    const empty = await (await server.get({ path: '/channels/nobody' })).json();
    assert(eq(empty, { occupied: false }), JSON.stringify(empty));
    // A client with the wrong secret is refused and changes nothing.
    const wrong = new PusherServer({ appId, key, secret: 'wrong', host: '127.0.0.1', port: String(port), useTLS: false });
    let status = null;
    try {
      await wrong.trigger('alpha', 'ping', { n: 5 });
    } catch (e) {
      status = e.status;
    }
    assert(status === 401, `wrong secret got ${status}`);
    await sleep(200);
    assert(got.a.length === 4 && got.b.length === 5, 'a refused trigger was delivered');
    a.disconnect();
    b.disconnect();
  },

  // A cache channel: pusher-js reports the miss, then a later subscriber gets the last event
  // triggered on it as soon as it subscribes, through Echo too.
  async cache() {
    const first = pusherClient();
    const missed = [];
    const channel = first.subscribe('cache-score');
    channel.bind('pusher:cache_miss', () => missed.push(true));
    await subscribed(channel);
    await until('the cache miss', () => missed.length === 1);
    await server.trigger('cache-score', 'Score', { home: 1 });
    await server.trigger('cache-score', 'Score', { home: 2 });
    const late = echo();
    const got = [];
    late.channel('cache-score').listen('.Score', (e) => got.push(e));
    await until('the kept event', () => got.length === 1);
    assert(eq(got[0], { home: 2 }), JSON.stringify(got));
    first.disconnect();
    late.disconnect();
  },

  // Subscribed and waiting for a broadcast coming through Redis (the Python test publishes).
  async redis() {
    const client = echo();
    const got = [];
    client.private('orders.7').listen('OrderShipped', (e) => got.push(e));
    client.channel('news').listen('.Headline', (e) => got.push(e));
    await until('subscribed', () =>
      client.connector.pusher.channel('private-orders.7')?.subscribed && client.connector.pusher.channel('news')?.subscribed);
    console.log(`ready ${client.socketId()}`);
    await until('two broadcasts', () => got.length === 2, 10000);
    assert(eq(got, [{ id: 7, socket: null }, { title: 'hi', socket: null }]), JSON.stringify(got));
    client.disconnect();
  },

  // pusher-js's signin(), signed by the server SDK's authenticateUser(): events the SDK sends
  // to the user (sendToUser) reach each of their connections, and terminateUserConnections()
  // ends them for good (pusher-js does not reconnect after 4009).
  async user() {
    const userAuthentication = {
      customHandler: ({ socketId }, callback) => callback(null, server.authenticateUser(socketId, { id: 'u7', name: 'Ann' })),
    };
    const tabs = [0, 1].map(() => new Pusher(key, { ...clientOptions(), userAuthentication }));
    const got = [[], []];
    tabs.forEach((tab, i) => {
      tab.user.bind('note', (data) => got[i].push(data));
      tab.signin();
    });
    for (const tab of tabs) {
      await connected(tab);
      await until('signed in', () => tab.user.user_data?.id === 'u7');
      await until('the user channel', () => tab.user.serverToUserChannel?.subscribed);
    }
    await server.sendToUser('u7', 'note', { text: 'for you' });
    await server.sendToUser('u8', 'note', { text: 'for someone else' });
    await until('the note, in both tabs', () => got[0].length === 1 && got[1].length === 1);
    assert(eq(got, [[{ text: 'for you' }], [{ text: 'for you' }]]), JSON.stringify(got));
    const other = pusherClient();
    await connected(other);
    await server.terminateUserConnections('u7');
    for (const tab of tabs) await until('terminated', () => tab.connection.state === 'disconnected');
    await sleep(1500);
    assert(tabs.every((tab) => tab.connection.state === 'disconnected'), 'a terminated tab reconnected');
    assert(other.connection.state === 'connected', `another user's connection: ${other.connection.state}`);
    other.disconnect();
  },

  // Laravel Echo on `php artisan surge:serve`, its app read from broadcasting.connections.pusher;
  // the Python test runs `artisan app:broadcast orders ...` once this says ready.
  async laravel() {
    const client = echo();
    const got = [];
    client.channel('orders').listen('OrderShipped', (e) => got.push(e));
    await until('subscribed', () => client.connector.pusher.channel('orders')?.subscribed);
    console.log(`ready ${client.socketId()}`);
    await until('the broadcast', () => got.length === 1, 10000);
    assert(got[0].message === 'shipped by Laravel', JSON.stringify(got));
    client.disconnect();
  },
};

const name = process.argv[2];
try {
  if (!scenarios[name]) throw new Error(`no scenario '${name}'; have ${Object.keys(scenarios).join(', ')}`);
  await scenarios[name]();
  console.log(`ok ${name}`);
  process.exit(0);
} catch (e) {
  console.log(`FAILED ${name}: ${e.stack || e}`);
  process.exit(1);
}
