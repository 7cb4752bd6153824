<?php
// Every kind of PHP callable as a callback: a private method registered from inside its class,
// __call and __callStatic trampolines, a static method string, an invokable object, a function
// name, and a closure. A message "use:KIND" switches the message callback to that kind; every
// callback says which kind ran.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set((getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : []) + ['log_level' => 'debug']);

class Handlers
{
    public function __construct(private Surge\WebSocket\Server $server) {}

    public function register(): void
    {
        $this->server->on('open', [$this, 'opened']);
        $this->server->on('message', [$this, 'viaCall']);
        $this->server->on('close', 'Handlers::closed');
        $this->server->after(1, [$this, 'timer']);
    }

    private function opened($s, $request): void
    {
        $s->push($request->fd, 'private method');
    }

    private function timer(): void
    {
        echo "private timer\n";
    }

    public function __call($name, $args): void
    {
        answer(...$args, who: "__call $name");
    }

    public static function __callStatic($name, $args): void
    {
        answer(...$args, who: "__callStatic $name");
    }

    public static function closed($s, $fd): void
    {
        echo "static method closed $fd\n";
    }
}

class Prefixed
{
    public function __construct(public string $prefix) {}

    /** Registers one of its methods by class name: PHP calls it on this object, the caller's $this. */
    public function attach($s): void
    {
        $s->on('message', [self::class, 'prefixed']);
    }

    public function prefixed($s, $frame): void
    {
        answer($s, $frame, $this->prefix);
    }
}

/** The same size as Prefixed: it takes the memory of a Prefixed that was freed. */
class Decoy
{
    public function __construct(public string $prefix) {}
}

class Invokable
{
    public function __invoke($s, $frame): void
    {
        answer($s, $frame, 'invokable');
    }
}

function by_name($s, $frame): void
{
    answer($s, $frame, 'function name');
}

function answer($s, $frame, string $who): void
{
    if ($frame->data === 'use:caller-this') {
        // Nothing but the callback holds this object once attach() returns.
        (new Prefixed('the caller\'s $this'))->attach($s);
        $GLOBALS['decoy'] = new Decoy('a freed object');
        $s->push($frame->fd, 'switched');
    } elseif (str_starts_with($frame->data, 'use:')) {
        $s->on('message', pick(substr($frame->data, 4)));
        $s->push($frame->fd, 'switched');
    } else {
        $s->push($frame->fd, "$who: {$frame->data}");
    }
}

function pick(string $kind): callable|array|string
{
    global $handlers;
    return match ($kind) {
        'invokable' => new Invokable(),
        'static-magic' => 'Handlers::viaCallStatic',
        'function' => 'by_name',
        'closure' => fn($s, $frame) => answer($s, $frame, 'closure'),
        'call' => [$handlers, 'viaCall'],
    };
}

$server->on('start', fn($s) => print("start {$s->port}\n"));
$handlers = new Handlers($server);
$handlers->register();
$server->start();
