import { describe, expect, it } from 'vitest';
import { lineRedactor, REDACTED, redactSecrets } from '../../src/shared/redact';

describe('redactSecrets', () => {
  it.each([
    ['password=hunter2 user=bob', 'password=[redacted] user=bob'],
    ['DB_PASSWORD="s3cr3t value" next', 'DB_PASSWORD="[redacted]" next'],
    ['passwd: hunter2', 'passwd: [redacted]'],
    ['client_secret = abc123', 'client_secret = [redacted]'],
    ['GITHUB_TOKEN=abc123def', 'GITHUB_TOKEN=[redacted]'],
    ['x-auth-token: abc123', 'x-auth-token: [redacted]'],
    ['spring.datasource.password=pw1', 'spring.datasource.password=[redacted]'],
    ['AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'AWS_SECRET_ACCESS_KEY=[redacted]'],
    ['apiKey: abc', 'apiKey: [redacted]'],
    ['APIKEY=abc', 'APIKEY=[redacted]'],
    ['private_key=abc', 'private_key=[redacted]'],
    ['credentials: user/pw', 'credentials: [redacted]'],
    ['auth=user:pw', 'auth=[redacted]'],
  ])('redacts the value of a secret-looking name=value or name: value (%s)', (line, expected) => {
    expect(redactSecrets(line)).toBe(expected);
  });

  it('redacts JSON and Python-repr values, keeping the quotes and the other fields', () => {
    expect(redactSecrets('{"token": "abc.def", "auc": 0.83}')).toBe('{"token": "[redacted]", "auc": 0.83}');
    expect(redactSecrets('{"api_key":"a\\"b","n":1}')).toBe('{"api_key":"[redacted]","n":1}');
    expect(redactSecrets("{'api-key': 'abcd1234', 'n': 3}")).toBe("{'api-key': '[redacted]', 'n': 3}");
    // A progress event stays valid JSON, so it can still be heartbeated.
    expect(JSON.parse(redactSecrets('{"event":"progress","secret":"s","pct":5}'))).toEqual({
      event: 'progress',
      secret: REDACTED,
      pct: 5,
    });
  });

  it('redacts --name value and --name=value flags, but not the flag that follows', () => {
    expect(redactSecrets('train --password hunter2 --epochs 3')).toBe('train --password [redacted] --epochs 3');
    expect(redactSecrets('--api-key=XYZ123 --lr 0.1')).toBe('--api-key=[redacted] --lr 0.1');
    expect(redactSecrets('--token --verbose')).toBe('--token --verbose');
  });

  it('redacts secret query parameters inside a URL that is itself a value', () => {
    expect(redactSecrets('url=https://x.example/?a=1&token=abc123&b=2')).toBe(
      'url=https://x.example/?a=1&token=[redacted]&b=2',
    );
  });

  it('redacts Bearer and Basic credentials, keeping the scheme', () => {
    expect(redactSecrets('Authorization: Bearer abcdefghijklmnop')).toBe('Authorization: Bearer [redacted]');
    expect(redactSecrets('sending bearer eyJhbGciOi.x.y1234')).toBe('sending bearer [redacted]');
    expect(redactSecrets('Authorization: Basic dXNlcjpwYXNzd29yZA==')).toBe('Authorization: Basic [redacted]');
    expect(redactSecrets('authorization: Token abcdef123')).toBe('authorization: Token [redacted]');
  });

  it('redacts the password of credentials in a URL and keeps the user; a token as the user goes too', () => {
    expect(redactSecrets('connecting to postgres://admin:pa55word@db:5432/x')).toBe(
      'connecting to postgres://admin:[redacted]@db:5432/x',
    );
    expect(redactSecrets('DATABASE_URL=redis://:s3cret@cache:6379')).toBe(
      'DATABASE_URL=redis://:[redacted]@cache:6379',
    );
    expect(redactSecrets('clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r')).toBe(
      'clone https://[redacted]@github.com/o/r',
    );
    expect(redactSecrets('ssh://git@example.com/repo')).toBe('ssh://git@example.com/repo');
  });

  it('redacts AWS access key ids, JWTs, GitHub and Slack tokens on their own', () => {
    expect(redactSecrets('key AKIAIOSFODNN7EXAMPLE in use')).toBe('key [redacted] in use');
    expect(redactSecrets('got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc_DEF-123 back')).toBe('got [redacted] back');
    expect(redactSecrets('using ghp_abcdefghijklmnopqrstuvwxyz0123456789')).toBe('using [redacted]');
    expect(redactSecrets('slack xoxb-1234567890-abcdefghij')).toBe('slack [redacted]');
  });

  it('redacts a PEM private key on one line and a lone base64 key line', () => {
    expect(redactSecrets('"-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIB\\n-----END RSA PRIVATE KEY-----\\n"')).toBe(
      '"-----BEGIN RSA PRIVATE KEY-----[redacted]\\n"',
    );
    expect(redactSecrets('MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0VY2xQ6F0Yz7r9Yj6eZkKcWBi')).toBe(REDACTED);
  });

  it('redacts every occurrence of a known secret of 8 characters or more, and ignores shorter ones', () => {
    const key = 'sk-live-0123456789abcdef';
    expect(redactSecrets(`key is ${key}; again:${key}!`, [key, 'abc'])).toBe('key is [redacted]; again:[redacted]!');
    expect(redactSecrets('abc and abcdefg', ['abc', 'abcdefg'])).toBe('abc and abcdefg');
    // The longer of two overlapping secrets goes whole.
    expect(redactSecrets('x=longsecret-123', ['longsecret', 'longsecret-123'])).toBe('x=[redacted]');
  });

  it.each([
    'epoch 3/10 loss=0.4213 auc=0.83 accuracy: 0.91 f1=0.49',
    'max_tokens=512 tokens_per_sec=1834.2 token_count: 17 tokenizer=bert-base num_tokens=4',
    'author: alice; password_file=/etc/app/pw.txt',
    'wrote /work/data/artifacts/churn/v1/model.onnx in 1.06s',
    'train.py: ONNX parity on 200 test rows: max probability difference 5.47e-08',
    '{"event":"progress","step":"fit","pct":40,"metrics":{"auc":0.835807,"trainRows":4800}}',
    'Basic statistics computed on 4800 rows',
    'see https://example.com/docs?page=2#auth and http://localhost:7233',
    '12:30:01 INFO step 5 of 20',
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'Traceback (most recent call last):',
    '  File "/work/main/examples/churn/train.py", line 151, in load_csv',
    "KeyError: 'token'",
  ])('leaves an ordinary line alone: %s', (line) => {
    expect(redactSecrets(line)).toBe(line);
  });

  it('stays fast on long hostile lines', () => {
    const started = performance.now();
    for (const line of [
      'a-'.repeat(200_000),
      'password="'.repeat(20_000),
      `token=${'x'.repeat(400_000)}`,
      'http://'.repeat(50_000),
      'eyJ'.repeat(100_000),
    ]) {
      redactSecrets(line, ['some-known-secret']);
    }
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('lineRedactor', () => {
  it('redacts a PEM private key block from its BEGIN line to its END line, and nothing after', () => {
    const redact = lineRedactor();
    const out = [
      'loading key',
      '-----BEGIN PRIVATE KEY-----',
      'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC',
      'abc/def+ghi',
      '-----END PRIVATE KEY----- password=x',
      'epoch 1 auc=0.7',
    ].map(redact);
    expect(out).toEqual([
      'loading key',
      '-----BEGIN PRIVATE KEY-----[redacted]',
      REDACTED,
      REDACTED,
      '[redacted]-----END PRIVATE KEY----- password=[redacted]',
      'epoch 1 auc=0.7',
    ]);
  });

  it('finds a known secret of several lines line by line', () => {
    const redact = lineRedactor(['first-line-of-it\nsecond-line-of-it\nx']);
    expect(['a first-line-of-it', 'second-line-of-it b', 'x'].map(redact)).toEqual([
      'a [redacted]',
      '[redacted] b',
      'x',
    ]);
  });

  it('applies the known secrets to every line', () => {
    const redact = lineRedactor(['hunter2-hunter2']);
    expect(redact('pw hunter2-hunter2')).toBe('pw [redacted]');
  });
});
