<?php
// The differential test's upstream: prints $_POST and $_FILES exactly,
// every string as hex, every key with its type, tmp_name blanked (it is a
// random path). Run as `php -S 127.0.0.1:PORT echo.php`.
function enc($v) {
    if (is_array($v)) {
        $items = [];
        foreach ($v as $k => $x) {
            $items[] = [is_int($k) ? 'i' : 's', is_int($k) ? (string) $k : bin2hex($k), enc($x)];
        }
        return ['a' => $items];
    }
    if (is_int($v)) {
        return ['i' => (string) $v];
    }
    return ['s' => bin2hex((string) $v)];
}
function blank($v) {
    if (is_array($v)) {
        return array_map('blank', $v);
    }
    return '';
}
$files = $_FILES;
foreach ($files as $name => $f) {
    if (is_array($f) && array_key_exists('tmp_name', $f)) {
        $f['tmp_name'] = blank($f['tmp_name']);
        $files[$name] = $f;
    }
}
header('Content-Type: application/json');
echo json_encode(['post' => enc($_POST), 'files' => enc($files)]);
