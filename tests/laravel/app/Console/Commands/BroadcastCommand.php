<?php

namespace App\Console\Commands;

use App\Events\OrderShipped;
use Illuminate\Console\Command;

/** Fires OrderShipped as application code would; --socket plays the X-Socket-ID header. */
class BroadcastCommand extends Command
{
    protected $signature = 'app:broadcast {channel} {message} {--private} {--socket= : X-Socket-ID of the request, for toOthers()}';

    public function handle(): int
    {
        $event = new OrderShipped($this->argument('channel'), $this->argument('message'), (bool) $this->option('private'));
        if ($socket = $this->option('socket')) {
            $this->laravel['request']->headers->set('X-Socket-ID', $socket);
            broadcast($event)->toOthers();
        } else {
            event($event);
        }
        $this->line('broadcast '.$event->broadcastOn());

        return 0;
    }
}
