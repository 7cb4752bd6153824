<?php
// What the benchmark servers share: log at warn only, and SURGE_WORKER_THREADS, when set, gives
// worker_threads (0: the network work on the PHP thread). Everything else stays as shipped.
function bench_settings(array $own = []): array
{
    $settings = $own + ['log_level' => 'warn'];
    if (getenv('SURGE_WORKER_THREADS') !== false) {
        $settings['worker_threads'] = (int) getenv('SURGE_WORKER_THREADS');
    }
    if (getenv('SURGE_WORKER_NUM') !== false) {
        $settings['worker_num'] = (int) getenv('SURGE_WORKER_NUM');
    }
    return $settings;
}
