<?php
// Writers killed with SIGKILL in the middle of their work, R times over: each round forks W
// children that rewrite, insert and delete rows of strings of BYTES (256 KiB: much of their
// time is spent inside a row's lock; 8: the kill lands on the few instructions of a bucket's
// lock more often), kills them all a few milliseconds later, and then, before reaping them
// (zombies, as workers are until the master reaps them), reads, writes, inserts and deletes
// the keys they inserted (in the same buckets) and iterates over every row. A lock held by a
// killed writer would hang it. At the end it fills the table.
//   php killed.php R W BYTES
[, $rounds, $writers, $big] = array_map('intval', $argv);

$t = new Surge\Table(64);
$t->column('n', Surge\Table::TYPE_INT);
$t->column('s', Surge\Table::TYPE_STRING, $big);
$t->create();
for ($k = 0; $k < 8; $k++) {
    $t->set("row $k", ['n' => 0, 's' => '']);
}

$killed = 0;
for ($r = 0; $r < $rounds; $r++) {
    $pids = [];
    for ($w = 0; $w < $writers; $w++) {
        $pid = pcntl_fork();
        if ($pid === 0) {
            $fill = str_repeat(chr(65 + $w), $big);
            for ($i = 0; ; $i++) {
                $t->set('row ' . ($i % 8), ['n' => $i, 's' => $fill]);
                $t->set("new $w", ['s' => $fill]);
                $t->del("new $w");
            }
        }
        $pids[] = $pid;
    }
    usleep(random_int(2000, 20000));
    exec('kill -9 ' . implode(' ', $pids));
    // Every row can be read, written and iterated over, and a new key inserted and deleted.
    for ($k = 0; $k < 8; $k++) {
        $t->get("row $k");
        $t->incr("row $k", 'n');
    }
    $t->set("parent $r", ['n' => $r]);
    $t->del("parent $r");
    for ($w = 0; $w < $writers; $w++) {
        $t->set("new $w", ['n' => $r]);
        $t->del("new $w");
    }
    $rows = 0;
    foreach ($t as $row) {
        $rows++;
    }
    foreach ($pids as $pid) {
        pcntl_waitpid($pid, $status);
        $killed += (int) (pcntl_wifsignaled($status) && pcntl_wtermsig($status) === 9);
    }
}
// The rows killed writers had taken and not linked (or unlinked and not given back) come back
// once the table is full: it holds its whole capacity again.
$counted = count($t);
try {
    for ($i = 0; ; $i++) {
        $t->set("fill $i", ['n' => $i]);
    }
} catch (Surge\Exception $e) {
}
$full = 0;
foreach ($t as $row) {
    $full++;
}
echo json_encode(['killed' => $killed, 'rows' => $rows, 'count' => $counted, 'full_rows' => $full,
    'full_count' => count($t), 'refusal' => $e->getMessage()]), "\n";
