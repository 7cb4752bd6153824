<?php
// Writers rewrite one row as fast as they can while readers read it (get, and foreach), each in
// its own forked process. Readers go on for at least SECONDS and until each has seen the row
// change 40 times (a loaded machine may give them little CPU), at most 20 s; writers stop when
// every reader is done. Every row written is consistent:
// b = -a, f = a / 2, s = a letter repeated, both picked by a. A reader that ever sees a row
// whose columns disagree has seen a torn row. Prints the totals as JSON.
// The row's key is 'row', or the int 7 with a fourth argument "int" (get takes another path
// for a row read before under an int key).
//   php torn.php WRITERS READERS SECONDS [int]
[$writers, $readers, $seconds] = array_map('floatval', array_slice($argv, 1, 3));
$rowKey = ($argv[4] ?? '') === 'int' ? 7 : 'row';

$t = new Surge\Table(16);
$t->column('a', Surge\Table::TYPE_INT);
$t->column('b', Surge\Table::TYPE_INT);
$t->column('f', Surge\Table::TYPE_FLOAT);
$t->column('s', Surge\Table::TYPE_STRING, 64);
$t->create();

function row_for(int $a): array
{
    return ['a' => $a, 'b' => -$a, 'f' => $a * 0.5, 's' => str_repeat(chr(65 + abs($a) % 26), 1 + abs($a) % 64)];
}

function consistent(array|false $row): bool
{
    return $row !== false && array_keys($row) === ['a', 'b', 'f', 's'] && $row === row_for($row['a']);
}

$t->set($rowKey, row_for(0));
// Results go in the table too: it is shared.
$results = new Surge\Table(64);
foreach (['reads', 'torn', 'changes', 'writes', 'scans', 'done'] as $column) {
    $results->column($column, Surge\Table::TYPE_INT);
}
$results->create();

$minimum = microtime(true) + $seconds;
$deadline = microtime(true) + 20;
$children = [];
for ($c = 0; $c < $writers + $readers; $c++) {
    $pid = pcntl_fork();
    if ($pid === -1) {
        fwrite(STDERR, "fork failed\n");
        exit(1);
    }
    if ($pid > 0) {
        $children[] = $pid;
        continue;
    }
    if ($c < $writers) {
        // Writer c writes a = c + 1, c + 1 + writers, ... (its own values; odd writers negate).
        $writes = 0;
        $readersDone = fn() => ($results->get('total', 'done') ?: 0) >= $readers;
        for ($a = $c + 1; !$readersDone() && microtime(true) < $deadline; $a += $writers) {
            $t->set($rowKey, row_for($c % 2 ? -$a : $a));
            $writes++;
        }
        $results->incr('total', 'writes', $writes);
        exit(0);
    }
    [$reads, $torn, $changes, $scans, $last] = [0, 0, 0, 0, null];
    while ((microtime(true) < $minimum || $changes < 40) && microtime(true) < $deadline) {
        for ($i = 0; $i < 100; $i++) {
            $row = $t->get($rowKey);
            $reads++;
            if (!consistent($row)) {
                if ($torn++ < 5) {
                    fwrite(STDERR, 'torn row: ' . json_encode($row, JSON_PRESERVE_ZERO_FRACTION) . "\n");
                }
            } elseif ($row['a'] !== $last) {
                $changes++;
                $last = $row['a'];
            }
        }
        foreach ($t as $key => $row) {
            $scans++;
            if ($key !== (string) $rowKey || !consistent($row)) {
                if ($torn++ < 5) {
                    fwrite(STDERR, "torn row in foreach: $key " . json_encode($row, JSON_PRESERVE_ZERO_FRACTION) . "\n");
                }
            }
        }
    }
    $results->incr('total', 'reads', $reads);
    $results->incr('total', 'torn', $torn);
    $results->incr('total', 'changes', $changes);
    $results->incr('total', 'scans', $scans);
    $results->incr('total', 'done');
    exit(0);
}

$statuses = [];
foreach ($children as $pid) {
    pcntl_waitpid($pid, $status);
    $statuses[] = pcntl_wifexited($status) ? pcntl_wexitstatus($status) : -1;
}
echo json_encode(['statuses' => $statuses, 'last_consistent' => consistent($t->get($rowKey))] + $results->get('total')), "\n";
