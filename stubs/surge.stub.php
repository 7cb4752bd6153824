<?php

// Stubs for IDEs and docs; tests/e2e/test_stubs.py checks them against the extension.
// Never include this file where the extension is loaded: the classes would be declared twice.

namespace {
    /** Surge's version, e.g. "0.1.0". */
    const SURGE_VERSION = '0.1.0';

    /** Opcode of a UTF-8 text message; push()'s default. */
    const WEBSOCKET_OPCODE_TEXT = 1;
    /** Opcode of a binary message: push($fd, $bytes, WEBSOCKET_OPCODE_BINARY). */
    const WEBSOCKET_OPCODE_BINARY = 2;
    /** Opcode of a close frame; Surge sends these itself, use disconnect() to close. */
    const WEBSOCKET_OPCODE_CLOSE = 8;
    /** Opcode of a ping: push($fd, '', WEBSOCKET_OPCODE_PING) pings a client by hand. */
    const WEBSOCKET_OPCODE_PING = 9;
    /** Opcode of a pong; Surge answers pings itself, so PHP never needs it. */
    const WEBSOCKET_OPCODE_PONG = 10;

    /** getClientInfo()['websocket_status'] of a handshake's fd in the handshake callback (Swoole's status of a request that asks for an upgrade). */
    const WEBSOCKET_STATUS_CONNECTION = 1;
    /** Swoole's websocket_status of a connection in its handshake (not answered by Surge). */
    const WEBSOCKET_STATUS_HANDSHAKE = 2;
    /** getClientInfo()['websocket_status'] of an open WebSocket connection. */
    const WEBSOCKET_STATUS_ACTIVE = 3;
    /** Swoole's other name of WEBSOCKET_STATUS_ACTIVE. */
    const WEBSOCKET_STATUS_FRAME = 3;
    /** getClientInfo()['websocket_status'] of a connection that is closing. */
    const WEBSOCKET_STATUS_CLOSING = 4;

    /** Close code 1000: normal closure; the default of disconnect() and close(). */
    const WEBSOCKET_CLOSE_NORMAL = 1000;
    /** Close code 1001: going away; sent to every client when the server shuts down. */
    const WEBSOCKET_CLOSE_GOING_AWAY = 1001;
    /** Close code 1002: protocol error; sent to a client that broke the WebSocket protocol. */
    const WEBSOCKET_CLOSE_PROTOCOL_ERROR = 1002;
    /** Close code 1003: the endpoint cannot accept this kind of data. */
    const WEBSOCKET_CLOSE_DATA_ERROR = 1003;
    /** Close code 1005: no status code was received (never sent on the wire). */
    const WEBSOCKET_CLOSE_STATUS_ERROR = 1005;
    /** Close code 1006: the connection dropped without a close frame (never sent on the wire). */
    const WEBSOCKET_CLOSE_ABNORMAL = 1006;
    /** Close code 1007: a text message was not valid UTF-8; sent by Surge in that case. */
    const WEBSOCKET_CLOSE_MESSAGE_ERROR = 1007;
    /** Close code 1008: policy violation; Surge sends it to a slow consumer whose queue overflowed. */
    const WEBSOCKET_CLOSE_POLICY_ERROR = 1008;
    /** Close code 1009: a message was larger than the package_max_length setting. */
    const WEBSOCKET_CLOSE_MESSAGE_TOO_BIG = 1009;
    /** Close code 1010: the client expected an extension the server did not negotiate. */
    const WEBSOCKET_CLOSE_EXTENSION_MISSING = 1010;
    /** Close code 1011: the server hit an unexpected condition. */
    const WEBSOCKET_CLOSE_SERVER_ERROR = 1011;
    /** Close code 1013: try again later (the server is overloaded). */
    const WEBSOCKET_CLOSE_TRY_AGAIN_LATER = 1013;

    /** Swoole's server mode, taken by the constructor so ported code runs; either mode serves alike here. */
    const SWOOLE_BASE = 1;
    /** Swoole's server mode, taken by the constructor so ported code runs; either mode serves alike here. */
    const SWOOLE_PROCESS = 2;
    /** Swoole's socket type, taken by the constructor (the host decides IPv4 or IPv6). */
    const SWOOLE_SOCK_TCP = 1;
    /** Swoole's socket type, taken by the constructor (the host decides IPv4 or IPv6). */
    const SWOOLE_SOCK_TCP6 = 3;
    /** Added to the constructor's socket type: start() then insists on the ssl_cert_file and ssl_key_file settings (TLS comes from them). */
    const SWOOLE_SSL = 512;
    /** push()'s $flags: the frame ends its message (every push here is a whole message). */
    const SWOOLE_WEBSOCKET_FLAG_FIN = 1;
    /** push()'s $flags: compress the frame; the websocket_compression setting decides here. */
    const SWOOLE_WEBSOCKET_FLAG_COMPRESS = 2;

    /** Swoole's log levels, which the log_level setting takes: debug. */
    const SWOOLE_LOG_DEBUG = 0;
    /** log_level: debug. */
    const SWOOLE_LOG_TRACE = 1;
    /** log_level: info. */
    const SWOOLE_LOG_INFO = 2;
    /** log_level: info. */
    const SWOOLE_LOG_NOTICE = 3;
    /** log_level: warn. */
    const SWOOLE_LOG_WARNING = 4;
    /** log_level: error. */
    const SWOOLE_LOG_ERROR = 5;
    /** log_level: off. */
    const SWOOLE_LOG_NONE = 6;
}

namespace Surge {
    /** Thrown by Surge for every error a caller can cause (bad setting, unknown event, bad argument); the message names the culprit. */
    class Exception extends \Exception
    {
    }

    /** Swoole\Timer's static API over the timers of the server serving in this process (the same ids as $server->tick(), after() and clearTimer()): for code ported from Swoole. Adding a timer needs a serving server (from its callbacks, workerStart on); before start(), use $server->tick() and after(). */
    class Timer
    {
        /** Not for user code: Timer's methods are static, and `new` throws \Exception. */
        public function __construct()
        {
        }

        /** As $server->tick(): calls $callback($timerId, ...$params) every $ms milliseconds; returns the timer id. Throws Surge\Exception when no server serves in this process, or in the master process of worker processes. */
        public static function tick(int $ms, callable $callback, mixed ...$params): int
        {
        }

        /** As $server->after(): calls $callback(...$params) once after $ms milliseconds; returns the timer id. Throws as tick(). */
        public static function after(int $ms, callable $callback, mixed ...$params): int
        {
        }

        /** Stops a timer; false if there is no such timer (it already fired, or no server serves). */
        public static function clear(int $timer_id): bool
        {
        }

        /** Stops every timer of this process, the server's tick() and after() ones too. */
        public static function clearAll(): bool
        {
        }

        /** True while the timer is still to run. */
        public static function exists(int $timer_id): bool
        {
        }

        /** The ids of this process's timers still to run, oldest first (Swoole gives an iterator of them). */
        public static function list(): array
        {
        }
    }

    /** A table of typed rows in shared memory, like Swoole\Table: define columns, create(), then every process forked afterwards (pcntl_fork) reads and writes the same rows; holds exactly $size rows and throws Surge\Exception where Swoole would truncate. */
    class Table implements \Countable, \Iterator
    {
        /** A 64-bit signed integer column. */
        public const TYPE_INT = 1;

        /** A 64-bit float column (ints are accepted and stored as floats). */
        public const TYPE_FLOAT = 2;

        /** A binary-safe string column of at most the size given to column(), in bytes. */
        public const TYPE_STRING = 3;

        /** A table of exactly $size rows (1 to 2^31); $conflict_proportion (0 to 1) only sizes the hash index, never the number of rows. */
        public function __construct(int $size, float $conflict_proportion = 0.2)
        {
        }

        /** Adds a column before create(): TYPE_INT, TYPE_FLOAT, or TYPE_STRING holding at most $size bytes (1 to 1 MiB); throws for a duplicate name, a bad type or size, or after create(). */
        public function column(string $name, int $type, int $size = 0): bool
        {
        }

        /** Maps the shared memory (getMemorySize() bytes, pages taken as they are touched); call it before forking. Throws if called twice. */
        public function create(): bool
        {
        }

        /** Writes the given columns of row $key (1 to 63 bytes; an int is its decimal string); other columns keep their values, or are 0, 0.0 and "" in a new row. Throws, writing nothing, for an unknown column, a wrong type, a string longer than its column, a key too long, or a full table. */
        public function set(string|int $key, array $row): bool
        {
        }

        /** The row as [column => value], or one column's value with $field; false if there is no such row. */
        public function get(string|int $key, ?string $field = null): array|int|float|string|false
        {
        }

        /** True if row $key exists. */
        public function exists(string|int $key): bool
        {
        }

        /** Deletes row $key; false if there was none. Safe during foreach (see the README). */
        public function del(string|int $key): bool
        {
        }

        /** Swoole's other name of exists(). */
        public function exist(string|int $key): bool
        {
        }

        /** Swoole's other name of del(). */
        public function delete(string|int $key): bool
        {
        }

        /** Atomically adds $by (null means 1) to an INT or FLOAT column and returns the new value; a missing row is created at 0 first. Throws on overflow, a STRING column or a float step for an INT column. */
        public function incr(string|int $key, string $column, int|float|null $by = null): int|float
        {
        }

        /** Atomically subtracts $by (null means 1); otherwise as incr(). */
        public function decr(string|int $key, string $column, int|float|null $by = null): int|float
        {
        }

        /** The number of rows, as count($table) also gives. */
        public function count(): int
        {
        }

        /** The number of rows the table holds: exactly the $size given to the constructor (Swoole's may hold fewer). */
        public function getSize(): int
        {
        }

        /** Bytes of shared memory the table maps: 64 + 12 * buckets + size * row bytes (see the README). */
        public function getMemorySize(): int
        {
        }

        /** rows, capacity, memory_size, row_bytes, buckets, used_buckets, collisions, longest_chain, slots_touched, full_refusals. */
        public function stats(): array
        {
        }

        /** Iterator: the current row as [column => value], false past the end. */
        public function current(): array|false
        {
        }

        /** Iterator: the current row's key, always a string; null past the end. */
        public function key(): ?string
        {
        }

        /** Iterator: moves to the next live row. */
        public function next(): void
        {
        }

        /** Iterator: moves to the first live row. */
        public function rewind(): void
        {
        }

        /** Iterator: true while the position holds a row. */
        public function valid(): bool
        {
        }
    }
}

namespace Surge\WebSocket {
    /** A WebSocket server (with plain HTTP on the same port) in the style of Swoole\WebSocket\Server; all callbacks run on the thread that called start(). */
    class Server
    {
        /** The host given to the constructor, e.g. "0.0.0.0". */
        public readonly string $host;

        /** The port listened on: the real one once start() has bound it, when 0 was given. */
        public readonly int $port;

        /** This process's worker: 0 to worker_num - 1 in a worker process, -1 in their master (the process that called start()), 0 without worker processes. */
        public readonly int $worker_id;

        /** True in a task worker (worker ids from worker_num on, with task_worker_num). */
        public readonly bool $taskworker;

        /** This process's id. */
        public readonly int $worker_pid;

        /** The id of the process that called start(): the master of the worker processes. */
        public readonly int $master_pid;

        /** Swoole's manager process id: the master's (it starts workers again and runs workerError here). */
        public readonly int $manager_pid;

        /** What set() was given (a key set again: its last value), with worker_num and task_worker_num always there, as Swoole's $server->setting (its way to tell a task worker: $workerId >= $server->setting['worker_num']). */
        public readonly array $setting;

        /** The established WebSocket connections at the time of reading (unlike Swoole: no HTTP clients, no handshakes in progress, no closing connections), of every worker process; count() and foreach give their fds. */
        public readonly Connections $connections;

        /** Creates a server that will listen on $host:$port when start() runs (port 0, or null, picks a free port); throws Surge\Exception for a port outside 0-65535. $mode (SWOOLE_BASE or SWOOLE_PROCESS) and $sock_type (SWOOLE_SOCK_TCP or SWOOLE_SOCK_TCP6, with | SWOOLE_SSL) are Swoole's, taken so that ported code runs: either mode serves alike, the host decides IPv4 or IPv6, and SWOOLE_SSL makes start() insist on the ssl_cert_file and ssl_key_file settings. */
        public function __construct(string $host, ?int $port = null, ?int $mode = null, ?int $sock_type = null)
        {
        }

        /** Applies settings (worker_threads (default: the CPU count, divided among the worker_num workers, at least 1 each; 0: the network work runs on the PHP thread between callbacks, faster for quick callbacks, stalled by a blocking one), max_connection, package_max_length, heartbeat_check_interval (default 5, or half of heartbeat_idle_time when only that is set and under 10), heartbeat_idle_time (default 60, or twice heartbeat_check_interval when only that is set, as in Swoole), ping_interval, handshake_timeout, send_timeout (default 60: an HTTP response whose writes make no progress that long is closed), socket_buffer_size, event_queue_size, shutdown_timeout, log_level; redis (URL redis://[[user]:password@]host:port[/db], rediss:// for TLS, redis+unix:///path.sock?db=0&pass=...), redis_prefix (default laravel_database_), redis_forward (default true); ssl_cert_file, ssl_key_file (PEM files: TLS); allowed_origins (list, default any), max_connections_per_ip, max_messages_per_second (0: no limit); websocket_compression (bool, default false: permessage-deflate), websocket_subprotocol (a subprotocol or a list: the first the client asks for is answered); http_compression (bool, default true: whole text responses gzip-compressed for clients that accept it), http_compression_level (1-9, default 1), http_compression_min_length (bytes, default 20); enable_static_handler (bool), document_root (an existing directory), static_handler_locations (list of URL path prefixes), http_index_files (list of file names served for a directory): files there are served without calling PHP; upload_tmp_dir (an existing directory, default the system's temporary directory: where uploaded files are written as they arrive); worker_num (default 1: PHP worker processes on the same port, each reaching every connection; not with pusher), task_worker_num (default 0: processes that run what task() hands over; 0-256; needs a task callback; not with pusher)); numbers may be given as numeric strings (as read from the environment); Swoole's settings that ask for what Surge does anyway are taken ('daemonize' => false, 'dispatch_mode' => 1, 2 or 3, 'enable_coroutine' => false, 'max_conn' as max_connection, an int log_level as SWOOLE_LOG_*, any backlog above 0: the kernel's longest is used), the others throw saying how Surge does the same; an unknown key or bad value throws Surge\Exception naming it and nothing is applied; calls add up (settings that go together, such as ssl_cert_file and ssl_key_file, are checked by start()); throws once started. */
        public function set(array $settings): bool
        {
        }

        /** Sets the callback for an event (case-insensitive), null removes it: start($server) (in the master with worker_num > 1), workerStart($server, $workerId), workerStop($server, $workerId) (after the stop, before shutdown), open($server, $request), message($server, $frame), close($server, $fd, $reactorId) ($reactorId, Swoole's, is -1 when the server sent its close frame first: disconnect(), close(), the stop, a broken limit; else the worker id, also for a heartbeat drop, which sends no frame), request($request, $response), handshake($request, $response) (Swoole's: PHP answers every WebSocket handshake but the Pusher protocol's; status(101) and end(), or returning true without an answer, let the connection in with Surge's own Accept and extension headers beside the ones set (a Sec-WebSocket-Protocol, cookies), registered at once so that a push right after end() follows the 101; any other answer (end() with a 401, say) refuses it, as does returning anything but true without one (403); no open callback follows, as in Swoole: defer() the open logic or do it in the callback), shutdown($server), redis($server, string $channel, string $payload) (a message on a subscribed Redis channel, redis_prefix stripped); for Pusher protocol connections, observed after the fact: pusherSubscribe($server, int $fd, string $channel, ?array $member, string $appId) (a new subscription; $member is ['user_id' => string, 'user_info' => mixed] on presence channels, else null), pusherUnsubscribe($server, int $fd, string $channel, string $appId) (also for each channel of a connection that ends), pusherClientEvent($server, int $fd, string $channel, string $event, mixed $data, string $appId) (a client-* event delivered; $data JSON-decoded, objects as arrays); with task_worker_num, in a task worker task($server, int $taskId, int $srcWorkerId, mixed $data) (what it returns, unless null, is the task's result) and in the worker that sent the task finish($server, int $taskId, mixed $result); with worker processes, pipeMessage($server, int $srcWorkerId, mixed $message) (what another worker or a task worker sent with sendMessage()) and, in the master, workerError($server, int $workerId, int $workerPid, int $exitCode, int $signal) (a worker ended unasked, before it is started again: clean up what its close callbacks would have); an unknown event throws Surge\Exception. The callable is resolved here, in the caller's scope, as PHP resolves callable arguments: a class may register its own private methods ([$this, 'onMessage']); one that is not callable from here throws Surge\Exception, and so does on() once start() returned (the callback would never be called). */
        public function on(string $event, ?callable $callback): bool
        {
        }

        /** Listens and runs the callbacks until SIGINT/SIGTERM (or SIGHUP, unless ignored as nohup does) or shutdown(), with ignore_user_abort on (output that fails, its reader gone, is switched off rather than ending the script), then closes every client with 1001, lets HTTP requests under way get their answer, runs the shutdown callback and returns true; after a fatal error in a callback (memory_limit, E_USER_ERROR) closes every client with 1011 (a request whose callback it was gets a 500) and ends the script as PHP does after any fatal error (exit status 255, register_shutdown_function functions run, the shutdown callback does not); throws Surge\Exception if the workerStart callback throws (in any worker, with worker processes; the log says what), if it cannot listen, is already running, has already served and stopped (a server serves once: create a new one), or is called from a callback of a running server (one server serves per process). With worker_num > 1 or task_worker_num > 0 the calling process forks the workers (and task workers) and returns once they all stopped (throwing if one could not start); a worker runs the callbacks and ends as exit(0) would, never returning. */
        public function start(): bool
        {
        }

        /** Queues a message for $fd ($opcode null means WEBSOCKET_OPCODE_TEXT; also BINARY or PING) and returns true; unlike Swoole, returns false without a warning when the connection is gone, closing or too slow (for a connection of another worker process: true once queued for it, false if it cannot be reached); throws if text is not UTF-8. $flags is Swoole's: true or SWOOLE_WEBSOCKET_FLAG_FIN (with SWOOLE_WEBSOCKET_FLAG_COMPRESS, which the websocket_compression setting decides here); false or flags without FIN (a fragment) throw. Int arguments are read as PHP reads its own functions' (an fd given as the string key of a Table works). Pushes of the same message one after another (a foreach over connections) share one encoded frame, as broadcast() does. */
        public function push(int $fd, string $data, ?int $opcode = null, bool|int|null $flags = null): bool
        {
        }

        /** Queues $data for every established connection (not the Pusher protocol's) except the fds in $except ($opcode null means WEBSOCKET_OPCODE_TEXT; also BINARY or PING); the frame is encoded once and its bytes shared by all; returns how many connections it was queued for. */
        public function broadcast(string $data, ?array $except = null, ?int $opcode = null): int
        {
        }

        /** Adds $fd to the channel $channel (any string; created on first join); false if the connection is not open or already a member; a connection leaves all its channels by itself as it closes (and is no longer listed by members(), channels() and channelsOf() once it starts closing). */
        public function join(int $fd, string $channel): bool
        {
        }

        /** Removes $fd from $channel; false if it was not a member; a channel with no members left disappears. */
        public function leave(int $fd, string $channel): bool
        {
        }

        /** Queues $data (encoded once) for the members of $channel except the fds in $except; returns how many connections it was queued for (0 for an unknown channel). */
        public function publish(string $channel, string $data, ?array $except = null, ?int $opcode = null): int
        {
        }

        /** Every channel that has open members, as name => their count, sorted by name (a connection that is closing is not counted). */
        public function channels(): array
        {
        }

        /** The open fds in $channel, ascending; [] for an unknown channel. */
        public function members(string $channel): array
        {
        }

        /** The channels $fd is in, sorted by name; [] once it is closing, but in its close callback: those it was in. */
        public function channelsOf(int $fd): array
        {
        }

        /** Subscribes Redis channels (the redis_prefix setting is added), or patterns if a name has *, ? or [; before or after start() (not in the master's start or shutdown callback, which throws: it would reach no worker); each message goes to the redis callback and, with redis_forward, to the members of the Surge channel of the same name; throws Surge\Exception without the redis setting. */
        public function subscribe(string|array $channels): bool
        {
        }

        /** Unsubscribes channels or patterns given to subscribe(); false if none of them was subscribed; throws Surge\Exception without the redis setting. */
        public function unsubscribe(string|array $channels): bool
        {
        }

        /** PUBLISHes $payload to Redis on redis_prefix . $channel without waiting; false if the server is not running or 32 MiB of publishes wait; a publish Redis does not take is dropped and counted in stats()['redis']['dropped']; throws Surge\Exception without the redis setting. */
        public function redisPublish(string $channel, string $payload): bool
        {
        }

        /** Sends a Pusher event to the Pusher clients subscribed to $channels (one name, or up to 100: each gets it once; '#server-to-user-{id}' reaches the connections signed in as that user with pusher:signin), as the HTTP API's trigger does, with no HTTP round trip: $data a string as it is (usually JSON), anything else as json_encode() writes it; the connection of $except_socket_id left out (Laravel's toOthers()); $app_id needed only when several apps are configured. Kept as the last event of a cache channel. Returns how many connections it was sent to (0 if the server is not running). Throws Surge\Exception without the pusher setting, for an invalid channel or event name, an encrypted channel (its data must be encrypted by a Pusher server SDK), an unknown $app_id, a malformed socket id, or data over 10 KB, not UTF-8 or that JSON cannot hold. */
        public function pusherTrigger(string|array $channels, string $event, mixed $data, ?string $except_socket_id = null, ?string $app_id = null): int
        {
        }

        /** The connection's socket id, "<random>.<fd>" (the first part drawn when the server starts: no other run or server gives the same id), or null if the connection is gone: give it to the page, which sends it to Laravel as X-Socket-ID, so a broadcast made with toOthers() skips this connection. */
        public function socketId(int $fd): ?string
        {
        }

        /** True while the connection exists, including while it is closing (an HTTP request's fd: until its response is sent); fds are never reused within a process, so a stale fd never reaches a newer client. With worker processes, an fd of another worker listed by the last $server->connections read in the same batch of callbacks is true without asking that worker (see the README's Worker processes). */
        public function exist(int $fd): bool
        {
        }

        /** True if $fd is an established WebSocket connection that is not closing (false for plain HTTP clients). With worker processes, an fd of another worker listed by the last $server->connections read in the same batch of callbacks is true without asking that worker, unless this worker disconnected it since (see the README's Worker processes). */
        public function isEstablished(int $fd): bool
        {
        }

        /** Closes the connection with a close frame carrying $code (null means 1000; also 1001-1003, 1007-1014 (WEBSOCKET_CLOSE_POLICY_ERROR ...) and 3000-4999) and $reason (at most 123 bytes; else Surge\Exception); false if the connection is already gone. */
        public function disconnect(int $fd, ?int $code = null, ?string $reason = null): bool
        {
        }

        /** Closes the connection with a normal close frame (1000); an HTTP request's connection, before its response is sent, without any answer (Swoole's way to refuse a request); false if it is already gone. $reset is Swoole's, taken and not needed. */
        public function close(int $fd, mixed $reset = null): bool
        {
        }

        /** ['fd', 'remote_ip', 'remote_port', 'server_port', 'connect_time', 'last_time', 'websocket_status'] of a connection, or false if there is no such connection (in its close callback: as it was, websocket_status 4 if the server sent its close frame first, else 3, as in Swoole; of an HTTP request's fd until its response is sent: websocket_status 0, or 1 in the handshake callback, last_time when the request was read). $reactor_id and $ignore_error are Swoole's, taken and not needed. */
        public function getClientInfo(int $fd, mixed $reactor_id = null, mixed $ignore_error = null): array|false
        {
        }

        /** Swoole's older name of getClientInfo(). */
        public function connection_info(int $fd, mixed $reactor_id = null, mixed $ignore_error = null): array|false
        {
        }

        /** Swoole's getMasterPid(): $master_pid. */
        public function getMasterPid(): int
        {
        }

        /** Swoole's getManagerPid(): $manager_pid (the master's id). */
        public function getManagerPid(): int
        {
        }

        /** Swoole's getWorkerId(): $worker_id. */
        public function getWorkerId(): int
        {
        }

        /** Swoole's getWorkerPid(): $worker_pid. */
        public function getWorkerPid(): int
        {
        }

        /** Up to $find_count (null means 10; at most 100) established WebSocket connections with fds above $start_fd (null means 0), ascending; false when there are none, which ends Swoole's paging loop. */
        public function getClientList(?int $start_fd = null, ?int $find_count = null): array|false
        {
        }

        /** Swoole's older name of getClientList(). */
        public function connection_list(?int $start_fd = null, ?int $find_count = null): array|false
        {
        }

        /** Sends a ping frame carrying $data (null: none), as push($fd, $data, WEBSOCKET_OPCODE_PING); the client's pong is answered by nobody (it counts as activity). */
        public function ping(int $fd, ?string $data = null): bool
        {
        }

        /** Counters since start(), summed over the worker processes: start_time, connections, accepted, closed, rejected, messages_in, messages_out, bytes_in, bytes_out, http_requests, and Swoole's connection_num, accept_count, close_count, request_count (messages and requests), worker_num, task_worker_num (accepted counts every TCP connection, closed only WebSocket ones: connections is the open count); with the redis setting also 'redis' => [state (connecting, connected, disconnected), received, forwarded, dropped, reconnects, published, callback_dropped, overload_dropped, subscriptions]. */
        public function stats(): array
        {
        }

        /** Calls $callback($timerId, ...$params) every $ms milliseconds (1 ms to 1 year) once the server runs, on a fixed grid from now (a tick due while PHP is busy runs once when it is free, not once per interval missed); returns the timer id for clearTimer(). Throws in the master process of worker processes (add timers in workerStart), and once start() returned. */
        public function tick(int $ms, callable $callback, mixed ...$params): int
        {
        }

        /** Calls $callback(...$params) once after $ms milliseconds (1 ms to 1 year) once the server runs; returns the timer id for clearTimer(). Throws in the master process of worker processes (add timers in workerStart), and once start() returned. */
        public function after(int $ms, callable $callback, mixed ...$params): int
        {
        }

        /** Calls $callback() once the batch of events being handled is done (after the callback that asks returns; also while stopping, but not from workerStop or shutdown), as Swoole's defer(). Throws in the master process of worker processes, and once start() returned. */
        public function defer(callable $callback): bool
        {
        }

        /** Stops a timer made by tick() or after(); false if there is no such timer (or it already fired). */
        public function clearTimer(int $timer_id): bool
        {
        }

        /** Hands $data (a string as it is, any other value serialized) to the first free task worker, whose task callback runs with it; the result (the callback's return value unless null, or what it gives finish()) comes back to this worker: to $finish_callback($server, $taskId, $result) if given, else to the finish callback. Returns the task id (each worker counts from 0), or false if the task queue stayed full for 5 s. Throws Surge\Exception without task_worker_num, before start(), in a task worker, or for a $dst_worker_id other than null or -1 (the task worker cannot be chosen); $finish_callback is a callable or null. */
        public function task(mixed $data, ?int $dst_worker_id = null, mixed $finish_callback = null): int|false
        {
        }

        /** As task(), then waits up to $timeout seconds (default 0.5, up to 86400) for the result and returns it (no finish callback runs for it), or false if it did not come in time (a late result is dropped) or the queue stayed full. The worker waits meanwhile (with worker_threads 0, its network work too). Throws Surge\Exception as task() does, and for a timeout out of range. */
        public function taskwait(mixed $data, ?float $timeout = null, ?int $dst_worker_id = null): mixed
        {
        }

        /** As taskwait() for every value of $tasks, all queued at once: waits up to $timeout seconds (default 0.5, up to 86400) and returns their results under the keys of $tasks, without those that did not come in time (their results are dropped when they come); false if the queue stayed full. Throws Surge\Exception as taskwait() does. */
        public function taskWaitMulti(array $tasks, ?float $timeout = null): array|false
        {
        }

        /** Sends $message (a string as it is, any other value as serialize() makes it) to the pipeMessage callback of worker or task worker $dst_worker_id (0 to worker_num + task_worker_num - 1, not this one), from a worker or a task worker; true once handed over, false if that worker cannot be reached. Throws Surge\Exception without worker processes, outside a worker's callbacks, or for a $dst_worker_id out of range or this worker's own. */
        public function sendMessage(mixed $message, int $dst_worker_id): bool
        {
        }

        /** In the task callback of a task worker: sends $data to the worker that sent the task (as returning it does); once per task, else throws Surge\Exception, as it does outside a running task. */
        public function finish(mixed $data): bool
        {
        }

        /** Asks start() to stop: it closes every client with 1001, runs the shutdown callback and returns; safe to call from any callback; in a worker process, stops every worker. */
        public function shutdown(): bool
        {
        }

        /** Restarts the worker and task worker processes one at a time (only the task workers with $only_reload_taskworker), as SIGUSR1 (SIGUSR2) to the master does: each stops as at a stop (its clients are closed with 1001), then a new process takes its id and runs workerStart, so code included there is read anew; returns true once asked. Throws Surge\Exception without worker processes (worker_num 1 and no task workers), before start(), or with true and no task workers. */
        public function reload(?bool $only_reload_taskworker = null): bool
        {
        }
    }

    /** One whole message from a client, passed to the message callback; fragmented messages are reassembled first. Its properties are plain public ones, as in Swoole: a callback may change them, Surge never reads them back. */
    class Frame
    {
        /** The sender's connection id. */
        public int $fd;

        /** The message: UTF-8 text for WEBSOCKET_OPCODE_TEXT, raw bytes for WEBSOCKET_OPCODE_BINARY. */
        public string $data;

        /** WEBSOCKET_OPCODE_TEXT (1) or WEBSOCKET_OPCODE_BINARY (2); pings, pongs and closes are handled by Surge. */
        public int $opcode;

        /** Always true: PHP only ever sees whole messages. */
        public bool $finish;

        /** Not for user code: the server creates frames, and `new` throws \Exception. */
        public function __construct()
        {
        }
    }

    /** What $server->connections returns: a snapshot of the fds of established WebSocket connections, for count() and foreach. */
    class Connections implements \Countable, \Iterator
    {
        /** How many connections were established when $server->connections was read. */
        public function count(): int
        {
        }

        /** The fd at the current position, or null past the end. */
        public function current(): ?int
        {
        }

        /** The current position, from 0. */
        public function key(): int
        {
        }

        /** Moves to the next fd. */
        public function next(): void
        {
        }

        /** Moves back to the first fd. */
        public function rewind(): void
        {
        }

        /** True while the position holds an fd. */
        public function valid(): bool
        {
        }

        /** Not for user code: read $server->connections instead; `new` throws \Exception. */
        public function __construct()
        {
        }
    }
}

namespace Surge\Http {
    /** An HTTP request, or the WebSocket handshake passed to the open callback (with its query string and headers). */
    class Request
    {
        /** The connection's id (the WebSocket fd, for a handshake). */
        public readonly int $fd;

        /** Query-string parameters as PHP's $_GET has them (parse_str()): ['page' => 'home'] for ?page=home, ['tags' => ['a', 'b']] for ?tags[]=a&tags[]=b. */
        public readonly array $get;

        /** Form fields of an application/x-www-form-urlencoded or multipart/form-data body, as PHP's $_POST (brackets nest); empty for other bodies. */
        public readonly array $post;

        /** Files uploaded in a multipart/form-data body, laid out as PHP's $_FILES: ['doc' => ['name', 'full_path', 'type', 'tmp_name', 'error', 'size']], for doc[] each of those a list. The temporary files (under upload_tmp_dir) are uploads to is_uploaded_file() and move_uploaded_file(), and are deleted when the request is freed unless moved away. */
        public readonly array $files;

        /** Request headers by lowercase name; repeated headers are joined with ", ". */
        public readonly array $header;

        /** request_method, request_uri (the path as sent), path_info (the path URL-decoded, as Swoole gives it: %2e%2e%2f is ../ there, so never build a file path from it unchecked), query_string (if any), server_protocol, remote_addr, remote_port, server_port, request_time, request_time_float. */
        public readonly array $server;

        /** Cookies sent with the request, by name. */
        public readonly array $cookie;

        /** The raw request body (binary-safe string; empty if there is none, and for a multipart/form-data form, whose fields and files are in $post and $files). */
        public function rawContent(): string
        {
        }

        /** Same as rawContent(), under Swoole's other name for it. */
        public function getContent(): string
        {
        }

        /** The request method, e.g. "POST" ("GET" for a WebSocket handshake); the same as $server['request_method']. */
        public function getMethod(): string
        {
        }

        /** Not for user code: the server creates requests, and `new` throws \Exception. */
        public function __construct()
        {
        }
    }

    /** The answer to one HTTP request, sent whole by end(), or in chunks by write() and then end(); a response never ended gets a 500 when the request callback returns without keeping it. */
    class Response
    {
        /** The connection's id. */
        public readonly int $fd;

        /** Sets the status code (200-999, default 200; a 1xx is no final response, but for 101 in the handshake callback, which lets the connection in at end(): a 101 has no body, write(), sendfile() and end() with data throw) and, unless $reason is '' or null, a reason phrase of its own (HTTP/1.1 404 Gone Fishing); throws Surge\Exception outside that range or for a control character in $reason; false once write() or end() has sent the head. Arguments are read as PHP's coercive typing reads them, as Swoole's are ('201' is 201). */
        public function status(int|string $code, ?string $reason = null): bool
        {
        }

        /** Sets a response header, replacing one set before under the same name in any case (as Swoole does); an array $value sends one header of that name per element; an int, float or Stringable is taken as its text. Throws Surge\Exception for an invalid name or a control character (a line break) in the value; false once write() or end() has sent the head. $format is Swoole's and changes nothing (header names are not case-sensitive). */
        public function header(string $name, string|int|float|array|null $value, bool $format = true): bool
        {
        }

        /** Swoole's other name of status(). */
        public function setStatusCode(int|string $code, ?string $reason = null): bool
        {
        }

        /** Swoole's other name of header(). */
        public function setHeader(string $name, string|int|float|array|null $value, bool $format = true): bool
        {
        }

        /** Adds a Set-Cookie header as PHP's setcookie() writes it: $value URL-encoded (an empty one deletes the cookie), $expire a Unix time (0: until the browser closes), $path '/' unless given, $samesite 'Lax', 'Strict', 'None' or ''; null for any of them is its default (Symfony's Cookie getters give null), and they are read as PHP's coercive typing reads setcookie()'s arguments; throws Surge\Exception for a name, path or domain that would break the header, and for a value that is not UTF-8 text; false once write() or end() has sent the head. */
        public function cookie(string $key, ?string $value = null, int|string|null $expire = null, ?string $path = null, ?string $domain = null, ?bool $secure = null, ?bool $httponly = null, ?string $samesite = null): bool
        {
        }

        /** As cookie(), with $value sent as given, as PHP's setrawcookie() does: it must not hold ,; or white space (Surge\Exception). */
        public function rawCookie(string $key, ?string $value = null, int|string|null $expire = null, ?string $path = null, ?string $domain = null, ?bool $secure = null, ?bool $httponly = null, ?string $samesite = null): bool
        {
        }

        /** Swoole's other name of cookie(). */
        public function setCookie(string $key, ?string $value = null, int|string|null $expire = null, ?string $path = null, ?string $domain = null, ?bool $secure = null, ?bool $httponly = null, ?string $samesite = null): bool
        {
        }

        /** Swoole's other name of rawCookie(). */
        public function setRawCookie(string $key, ?string $value = null, int|string|null $expire = null, ?string $path = null, ?string $domain = null, ?bool $secure = null, ?bool $httponly = null, ?string $samesite = null): bool
        {
        }

        /** Sends the status and headers if not yet sent, then $data as a chunk of the body (chunked encoding: a Content-Length set by header() is dropped), which goes on until end(): for server-sent events or a long download. False, sending nothing, when the client has left or more than socket_buffer_size bytes already wait for it (isWritable() stays true then: write again later). The body also ends when the Response is freed or the server stops; a fatal error in the callback cuts it short (the client sees it incomplete). */
        public function write(string $data): bool
        {
        }

        /** Ends the response as a redirect to $location (replacing a Location header set before) with $http_code (300-399, 302 when null; throws outside that range); false if the head was already sent or the client has left. */
        public function redirect(string $location, int|string|null $http_code = null): bool
        {
        }

        /** Sends the status, headers (Content-Type: text/html unless one was set, as Swoole sends) and $data as the body (after write(): $data as the last chunk, and the body ends, without its last chunk if the body has a hole: see the README); false if it was already sent or the client has left. */
        public function end(?string $data = null): bool
        {
        }

        /** Sends $length bytes of the file $filename from $offset (0: to its end) as the body, with its Content-Length and a Content-Type from its extension (application/octet-stream when unknown) unless header() set one, and ends the response. The file is read 64 KiB at a time as the client takes it, never whole into memory. Throws Surge\Exception if the file cannot be opened, is not a regular file, or the range goes past its end; false if the head was already sent or the client has left. */
        public function sendfile(string $filename, int|string|null $offset = null, int|string|null $length = null): bool
        {
        }

        /** True until end(), unless the client has left (a long callback may ask, and stop). */
        public function isWritable(): bool
        {
        }

        /** Not for user code: the server creates responses, and `new` throws \Exception. */
        public function __construct()
        {
        }
    }
}

namespace {
    // Swoole's other server classes, which ported code type-hints (Swoole\Server) and constructs
    // (Swoole\Http\Server, an HTTP server: this one answers HTTP with the request callback).
    class_alias(\Surge\WebSocket\Server::class, 'Surge\Server');
    class_alias(\Surge\WebSocket\Server::class, 'Surge\Http\Server');
}
