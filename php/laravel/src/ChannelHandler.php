<?php

namespace Surge\Laravel;

use Illuminate\Broadcasting\Broadcasters\LogBroadcaster;
use Illuminate\Broadcasting\Broadcasters\NullBroadcaster;
use Illuminate\Auth\EloquentUserProvider;
use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Contracts\Broadcasting\Factory as BroadcastFactory;
use Illuminate\Http\Request as IlluminateRequest;
use Surge\Http\Request;
use Surge\Laravel\Contracts\Handler;
use Surge\WebSocket\Frame;
use Surge\WebSocket\Server;
use Throwable;

/**
 * The default handler: a small JSON protocol for Laravel broadcasting.
 *
 *   server -> client, on open:  {"event":"surge:connected","data":{"socket_id":"4242.1"}}
 *   client -> server:           {"subscribe":"orders"}    {"unsubscribe":"orders"}
 *   server -> client:           {"event":"surge:subscribed","channel":"orders"}
 *                               {"event":"surge:error","channel":"private-x","data":{"message":"..."}}
 *   broadcasts (native bridge): {"event":"App\\Events\\OrderShipped","channel":"orders","data":{...}}
 *
 * Public channels are open to everyone. "private-" and "presence-" channels are authorised by
 * the callbacks of routes/channels.php (Broadcast::channel()), exactly as /broadcasting/auth
 * would, for the user that user() returns for the connection: by default nobody, so private
 * channels are refused until you override user(). Extend this class and override message()
 * for your own messages.
 */
class ChannelHandler implements Handler
{
    /** @var array<int, Authenticatable> the user of each connection, from user() at open */
    protected array $users = [];

    /** Channels one connection may be in at once (the Pusher protocol's own bound). */
    protected int $maxChannels = 100;

    public function onOpen(Server $server, Request $request): void
    {
        $user = $this->user($request);
        if ($user !== null) {
            $this->users[$request->fd] = $user;
        }
        $this->send($server, $request->fd, 'surge:connected', null, ['socket_id' => $server->socketId($request->fd)]);
    }

    public function onMessage(Server $server, Frame $frame): void
    {
        $fd = $frame->fd;
        $message = json_decode($frame->data, true);
        if (! is_array($message)) {
            $this->send($server, $fd, 'surge:error', null, ['message' => 'messages must be JSON objects']);

            return;
        }
        if (isset($this->users[$fd])) {
            // Guards are reset after every callback: log the connection's user in for this one.
            auth()->setUser($this->users[$fd]);
        }
        if (array_key_exists('subscribe', $message)) {
            $this->subscribe($server, $fd, $message['subscribe']);
        } elseif (array_key_exists('unsubscribe', $message)) {
            $channel = $message['unsubscribe'];
            if (! is_string($channel)) {
                $this->send($server, $fd, 'surge:error', null, ['message' => 'unsubscribe takes a channel name']);

                return;
            }
            $server->leave($fd, $channel);
            $this->send($server, $fd, 'surge:unsubscribed', $channel);
        } else {
            $this->message($server, $frame, $message);
        }
    }

    public function onClose(Server $server, int $fd): void
    {
        unset($this->users[$fd]);
    }

    /**
     * The user of a new connection, or null for a guest. Override it to authenticate the
     * handshake: a token in the query string ($request->get['token']), a header, a cookie.
     */
    protected function user(Request $request): ?Authenticatable
    {
        return null;
    }

    /** A message that is not subscribe/unsubscribe. Override for your own protocol. */
    protected function message(Server $server, Frame $frame, array $message): void
    {
        $this->send($server, $frame->fd, 'surge:error', null, ['message' => 'unknown message: send {"subscribe": channel} or {"unsubscribe": channel}']);
    }

    /**
     * May the connection join $channel? Public channels: yes. Private and presence channels:
     * only for a user whom routes/channels.php lets in. Override to add your own rules.
     */
    protected function authorize(int $fd, string $channel): bool
    {
        if (! str_starts_with($channel, 'private-') && ! str_starts_with($channel, 'presence-')) {
            return true;
        }
        try {
            $user = $this->fresh($this->users[$fd] ?? null);
        } catch (Throwable) {
            return false; // the database down: nobody is let in
        }
        if ($user === null) {
            return false;
        }
        $broadcaster = app(BroadcastFactory::class)->connection();
        if ($broadcaster instanceof NullBroadcaster || $broadcaster instanceof LogBroadcaster) {
            return false; // they authorise everyone: never trust them with private channels
        }
        // As Echo's POST to /broadcasting/auth: the Pusher SDK signs for a socket_id (its
        // 7.x, Laravel 9 and later, refuses none), and a channel that names its guards
        // ('guards' => ['admin']) asks for the user of each: the connection's user belongs to
        // guard(), and is nobody for the others.
        $request = IlluminateRequest::create('http://localhost/broadcasting/auth', 'POST', [
            'channel_name' => $channel,
            // Only its form matters (the signature made for it is not used).
            'socket_id' => '1.'.$fd,
        ]);
        $request->setUserResolver(fn ($guard = null) => $guard === null || $guard === $this->guard() ? $user : null);
        try {
            $broadcaster->auth($request);

            return true;
        } catch (Throwable) {
            return false;
        }
    }

    /**
     * The user as the database has them now, as /broadcasting/auth would load them for each
     * subscription: the one kept since the handshake may have been deleted or lost a role
     * since (it kept joining private channels). Null for a user gone; the kept one when the
     * guard cannot load users again.
     */
    protected function fresh(?Authenticatable $user): ?Authenticatable
    {
        $guard = $user === null ? null : auth()->guard($this->guard());
        $provider = $guard !== null && method_exists($guard, 'getProvider') ? $guard->getProvider() : null;
        // A user the provider does not load (a guard without one, Auth::viaRequest(); a model
        // of another table) is taken as user() gave it.
        if ($provider === null || ($provider instanceof EloquentUserProvider && ! is_a($user, $provider->getModel()))) {
            return $user;
        }

        return $provider->retrieveById($user->getAuthIdentifier());
    }

    /** The auth guard of the users that user() returns: the default one unless overridden. */
    protected function guard(): string
    {
        return config('auth.defaults.guard');
    }

    protected function subscribe(Server $server, int $fd, mixed $channel): void
    {
        if (! is_string($channel) || ! preg_match('/^[A-Za-z0-9_\-=@,.;]{1,200}$/', $channel)) {
            $this->send($server, $fd, 'surge:error', null, ['message' => 'a channel name is 1 to 200 letters, digits or _-=@,.;']);

            return;
        }
        $joined = $server->channelsOf($fd);
        if (count($joined) >= $this->maxChannels && ! in_array($channel, $joined, true)) {
            $this->send($server, $fd, 'surge:error', $channel, ['message' => "a connection may be in at most {$this->maxChannels} channels"]);

            return;
        }
        if (! $this->authorize($fd, $channel)) {
            $this->send($server, $fd, 'surge:error', $channel, ['message' => 'not allowed to subscribe to '.$channel]);

            return;
        }
        $server->join($fd, $channel);
        $this->send($server, $fd, 'surge:subscribed', $channel);
    }

    protected function send(Server $server, int $fd, string $event, ?string $channel = null, ?array $data = null): bool
    {
        $message = ['event' => $event];
        if ($channel !== null) {
            $message['channel'] = $channel;
        }
        if ($data !== null) {
            $message['data'] = $data;
        }

        return $server->push($fd, json_encode($message, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
    }
}
