<?php
// PHP's imap extension as a POP3 client, run by tests/interop/test_interop_php.py: the UW c-client
// library's POP3 driver, which PHP helpdesks (osTicket and others) ingest mail with.
//
// $argv[1] is a JSON plan: the mailbox to open ("{host:port/pop3/...}INBOX"), the login,
// and what to do with each message. Every result goes to stdout as a record,
// "KIND NUMBER LENGTH\n", then LENGTH bytes and "\n", so the test compares the bytes
// exactly. PHP warnings and c-client's messages (imap_errors, imap_alerts) are records
// too, so stderr stays empty unless PHP itself fails.

declare(strict_types=1);

$plan = json_decode($argv[1], true, 512, JSON_THROW_ON_ERROR);

function record(string $kind, int $number, string $payload): void
{
    fwrite(STDOUT, "$kind $number " . strlen($payload) . "\n" . $payload . "\n");
}

$warnings = 0;
set_error_handler(function (int $level, string $message) use (&$warnings): bool {
    record('WARNING', $warnings++, $message);
    return true;
});

// What c-client logged: errors and warnings (mm_log) and alerts, in order. Taking them
// also stops PHP from printing them as notices at shutdown.
function messages(): void
{
    foreach (imap_errors() ?: [] as $n => $text) {
        record('ERROR', $n, $text);
    }
    foreach (imap_alerts() ?: [] as $n => $text) {
        record('ALERT', $n, $text);
    }
}

// Names of SASL mechanisms c-client must not use: it then falls back to the next it
// has, and to USER/PASS once none is left.
$options = isset($plan['disable']) ? ['DISABLE_AUTHENTICATOR' => $plan['disable']] : [];
// 0 leaves c-client's default: three tries of each mechanism, or of USER/PASS.
$stream = imap_open(
    $plan['mailbox'], $plan['user'], $plan['password'], 0, $plan['retries'] ?? 0, $options
);
if ($stream === false) {
    record('OPEN', 0, 'failed');
    messages();
    record('FINISHED', 0, '');
    exit(0);
}
record('OPEN', 0, 'ok');

$count = imap_num_msg($stream);
record('COUNT', 0, (string) $count);
if (!empty($plan['check'])) {
    $check = imap_check($stream);                    // NOOP
    record('MAILBOX', 0, $check->Mailbox);           // c-client's name for what it opened
}
for ($n = 1; $n <= $count; $n++) {
    foreach ($plan['each'] ?? [] as $action) {
        match ($action) {
            // TOP n 0, once: the header and the blank line after it.
            'header' => record('HEADER', $n, imap_fetchheader($stream, $n)),
            // RETR n, once (c-client keeps the last message in a temporary file): what
            // follows the header. FT_PEEK leaves \Seen alone, which POP3 cannot keep anyway.
            'body' => record('BODY', $n, imap_body($stream, $n, FT_PEEK)),
            'text' => record('TEXT', $n, imap_fetchbody($stream, $n, '1', FT_PEEK)),
            'whole' => record('WHOLE', $n, imap_fetchbody($stream, $n, '', FT_PEEK)),
            'uid' => record('UID', $n, (string) imap_uid($stream, $n)),
            'overview' => record(
                'OVERVIEW', $n, json_encode(imap_fetch_overview($stream, (string) $n)[0])
            ),
            default => throw new InvalidArgumentException("unknown action $action"),
        };
    }
}
// Deletion marks messages in c-client only; imap_expunge or CL_EXPUNGE sends the DELEs.
if (isset($plan['delete'])) {
    record('DELETE', 0, imap_delete($stream, $plan['delete']) ? 'ok' : 'failed');
}
if (isset($plan['undelete'])) {
    record('UNDELETE', 0, imap_undelete($stream, $plan['undelete']) ? 'ok' : 'failed');
}
if (!empty($plan['expunge'])) {
    record('EXPUNGE', 0, imap_expunge($stream) ? 'ok' : 'failed');
    record('COUNT', 1, (string) imap_num_msg($stream));
}
$closed = imap_close($stream, empty($plan['close_expunge']) ? 0 : CL_EXPUNGE);  // QUIT
record('CLOSE', 0, $closed ? 'ok' : 'failed');
messages();
record('FINISHED', 0, '');
