<?php
// N forked children each incr the same counters M times and insert K rows of their own, all
// at once; the parent then prints what the table holds as JSON.
//   php counter.php N M K
[, $n, $m, $k] = array_map('intval', $argv);

$t = new Surge\Table(1 + $n * $k + 8);
$t->column('hits', Surge\Table::TYPE_INT);
$t->column('down', Surge\Table::TYPE_INT);
$t->column('sum', Surge\Table::TYPE_FLOAT);
$t->create();

$children = [];
for ($c = 0; $c < $n; $c++) {
    $pid = pcntl_fork();
    if ($pid === -1) {
        fwrite(STDERR, "fork failed\n");
        exit(1);
    }
    if ($pid === 0) {
        for ($i = 0; $i < $m; $i++) {
            $t->incr('counter', 'hits');
            $t->decr('counter', 'down');
            $t->incr('counter', 'sum', 0.5);
            if ($i < $k) {
                $t->set("child $c row $i", ['hits' => $c, 'down' => $i]);
            }
        }
        exit(0);
    }
    $children[] = $pid;
}

$statuses = [];
foreach ($children as $pid) {
    pcntl_waitpid($pid, $status);
    $statuses[] = pcntl_wifexited($status) ? pcntl_wexitstatus($status) : -1;
}

$mine = 0;
foreach ($t as $key => $row) {
    if ($key !== 'counter' && $row['hits'] === (int) explode(' ', $key)[1] && $row['down'] === (int) explode(' ', $key)[3]) {
        $mine++;
    }
}
echo json_encode([
    'statuses' => $statuses,
    'counter' => $t->get('counter'),
    'count' => count($t),
    'child_rows_intact' => $mine,
], JSON_PRESERVE_ZERO_FRACTION), "\n";
