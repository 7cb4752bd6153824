<?php

namespace Surge\Laravel\Contracts;

use Surge\WebSocket\Server;

/**
 * Optional: a handler that also implements this runs tasks in task workers (surge.settings
 * 'task_worker_num'). Hand work over with $server->task($data) from any callback; onTask runs
 * in a free task worker, and what it returns (unless null) comes back to onFinish in the worker
 * that sent the task. Each runs as every handler callback does (clean auth, request, session).
 */
interface HandlesTasks
{
    /** In a task worker: runs the task; its return value, unless null, is the task's result. */
    public function onTask(Server $server, int $taskId, int $srcWorkerId, mixed $data): mixed;

    /** In the worker that sent task $taskId: its result. */
    public function onFinish(Server $server, int $taskId, mixed $result): void;
}
