/*
 * The OpenAPI 3.1 document of the REST API (GET /api/openapi.json). test/http/openApi.test.ts checks
 * real responses of every route against it, so it cannot drift from the code.
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str: Schema = { type: 'string' };
const int: Schema = { type: 'integer' };
const num: Schema = { type: 'number' };
const bool: Schema = { type: 'boolean' };
const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: 'null' }] });
const arr = (items: Schema): Schema => ({ type: 'array', items });
/** A closed object: every property listed, all required unless named optional. */
const obj = (properties: Record<string, Schema>, optional: string[] = []): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  additionalProperties: false,
});
/** An open object: the listed properties are required, others may follow (large typed results). */
const open = (properties: Record<string, Schema>): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties),
});
const page = (item: string): Schema => obj({ items: arr(ref(item)), next: nullable(str) });

const schemas: Record<string, Schema> = {
  Problem: {
    type: 'object',
    properties: { type: str, title: str, status: int, detail: str, code: str, hint: str },
    required: ['type', 'title', 'status', 'detail', 'code'],
  },
  Message: obj({
    id: str,
    stream: str,
    type: str,
    position: int,
    globalPosition: int,
    logPosition: { type: 'string', pattern: '^\\d+:\\d+$' },
    time: { type: 'string', format: 'date-time' },
    data: {},
    metadata: { type: 'object' },
    tags: arr(str),
  }),
  MessagePage: page('Message'),
  LogPage: obj({ items: arr(ref('Message')), next: nullable(str), position: str }),
  MessageList: obj({ items: arr(ref('Message')) }),
  MessageDetail: obj({
    message: ref('Message'),
    previous: nullable(str),
    next: nullable(str),
    correlated: arr(ref('Message')),
    caused: arr(ref('Message')),
  }),
  Category: obj({
    category: str,
    estimatedMessages: nullable(int),
    lastGlobalPosition: int,
    lastTime: str,
  }),
  CategoryPage: page('Category'),
  Stream: obj({ stream: str, version: int, lastTime: str }),
  StreamPage: page('Stream'),
  Summary: obj({
    lagging: int,
    retrying: int,
    failed: int,
    liveWorkers: int,
    blocking: nullable(obj({ pid: int, ageMs: int, query: str, state: str, own: bool })),
    logEnd: str,
    head: int,
  }),
  Checkpoint: obj({
    id: str,
    group: str,
    subscription: str,
    stream: str,
    position: int,
    version: int,
    status: { enum: ['active', 'retry', 'failed'] },
    attempts: int,
    nextAttemptAt: str,
    lastError: nullable({ type: 'object' }),
    leasedBy: nullable(str),
    leasedUntil: nullable(str),
  }),
  CheckpointPage: page('Checkpoint'),
  CheckpointDetail: {
    allOf: [
      open({ id: str, status: str, lastError: nullable({ type: 'object' }) }),
      open({
        attemptHistory: arr(
          obj({
            attempt: nullable(int),
            at: nullable(str),
            position: nullable(int),
            type: nullable(str),
            message: nullable(str),
            stack: nullable(str),
          }),
        ),
        history: arr(ref('AuditEntry')),
      }),
    ],
  },
  Subscriptions: obj({
    groups: arr(
      obj({
        name: str,
        liveWorkers: int,
        readerPosition: nullable(int),
        readerAgeSeconds: nullable(num),
        subscriptions: arr(
          obj({
            name: str,
            status: str,
            lag: int,
            lagCapped: { type: 'boolean' },
            oldestAgeMs: nullable(int),
            rate: nullable(num),
            failed: int,
            retrying: int,
            streamsBehind: int,
            logPosition: int,
          }),
        ),
      }),
    ),
  }),
  Workers: obj({
    items: arr(
      obj({
        id: str,
        host: str,
        pid: int,
        group: str,
        concurrency: int,
        startedAt: str,
        heartbeatAt: str,
        live: bool,
      }),
    ),
  }),
  Scheduled: obj({
    id: str,
    stream: str,
    type: str,
    data: {},
    metadata: { type: 'object' },
    deliverAt: str,
    attempts: int,
    lastError: nullable(str),
    createdAt: str,
  }),
  ScheduledPage: page('Scheduled'),
  Recurring: obj({
    items: arr(
      obj({
        name: str,
        cron: str,
        timezone: str,
        stream: str,
        type: str,
        data: {},
        nextOccurrenceAt: str,
        nextOccurrences: arr(str),
        lastOccurrenceAt: nullable(str),
        lastError: nullable(str),
        attempts: int,
      }),
    ),
  }),
  AuditEntry: obj({
    id: int,
    at: str,
    actor: str,
    action: str,
    target: { type: 'object' },
    result: { enum: ['ok', 'error'] },
    detail: {},
  }),
  AuditPage: page('AuditEntry'),
  Health: open({ healthy: bool, groups: arr({ type: 'object' }), blocking: nullable({ type: 'object' }) }),
  Lag: open({ takenAt: str, schema: str, head: int, readable: int, groups: arr({ type: 'object' }) }),
  RetentionResult: obj({
    dryRun: bool,
    force: bool,
    policies: arr(obj({ policy: str, deleted: int, protected: int, heldBy: arr(str), batches: int })),
  }),
  ChangeResult: obj({
    changed: arr(
      obj(
        {
          id: str,
          group: str,
          subscription: str,
          stream: str,
          wasStatus: str,
          wasAttempts: int,
          position: int,
          skipped: obj({ position: int, type: nullable(str) }),
          lastErrorMessage: nullable(str),
        },
        ['skipped'],
      ),
    ),
    notFailing: arr(str),
    busy: arr(str),
    missing: arr(str),
  }),
  ReleaseResult: obj({
    released: arr(obj({ id: str, leasedBy: nullable(str), leasedUntil: nullable(str) })),
    notLeased: arr(str),
    missing: arr(str),
  }),
  StatusChange: obj({ group: str, subscription: str, changed: bool }),
  ResetResult: obj({
    group: str,
    subscription: str,
    checkpoints: int,
    from: { enum: ['beginning', 'end'] },
    position: int,
  }),
  ForgetResult: obj({ group: str, subscription: str, checkpoints: int }),
  ReplayResult: open({
    dryRun: bool,
    group: str,
    subscription: str,
    streams: arr({ type: 'object' }),
    messages: int,
    redelivered: int,
    busy: arr(str),
  }),
  AppendResult: obj({ stream: str, ids: arr(str), streamVersion: int, globalPosition: int }),
  Cancelled: obj({ id: str, cancelled: { const: true } }),
  SentNow: obj({ name: str, id: str, streamVersion: int, globalPosition: int }),
  CheckpointTarget: {
    anyOf: [
      obj({ ids: arr(str) }),
      obj({ group: str, subscription: str, status: { enum: ['retry', 'failed'] } }, [
        'group',
        'subscription',
        'status',
      ]),
    ],
  },
  QueueSummary: obj({
    queue: str,
    ready: int,
    inFlight: int,
    delayed: int,
    retrying: int,
    waitingOnKey: int,
    dead: int,
    oldestAgeSeconds: num,
    readyAgeSeconds: num,
    completedPerMinute: num,
    failedPerMinute: num,
  }),
  QueueList: obj({ items: arr(ref('QueueSummary')) }),
  QueuedJob: obj({
    id: str,
    queue: str,
    state: { enum: ['ready', 'in-flight', 'delayed', 'waiting-on-key'] },
    type: str,
    data: {},
    metadata: { type: 'object' },
    key: nullable(str),
    deliveries: int,
    visibleAt: nullable(str),
    runAt: str,
    createdAt: str,
    leasedBy: nullable(str),
    errors: arr({ type: 'object' }),
  }),
  QueueJobs: obj({ queue: str, items: arr(ref('QueuedJob')) }),
  DeadLetter: obj({
    id: str,
    queue: str,
    type: str,
    data: {},
    metadata: { type: 'object' },
    key: nullable(str),
    deliveries: int,
    errors: arr({ type: 'object' }),
    createdAt: str,
    deadAt: str,
  }),
  DeadLetters: obj({ queue: str, items: arr(ref('DeadLetter')) }),
  RedriveResult: obj({ queue: str, ids: arr(str), missing: arr(str) }),
  PurgeResult: obj({ queue: str, deadLetters: bool, deleted: int }),
  EnqueueResult: obj({ queue: str, ids: arr(str) }),
  NewJob: obj({ type: str, data: {}, metadata: { type: 'object' }, id: str, key: str, delay: int }, [
    'metadata',
    'id',
    'key',
    'delay',
  ]),
  NewMessage: obj({ type: str, data: {}, metadata: { type: 'object' }, tags: arr(str), id: str }, [
    'metadata',
    'tags',
    'id',
  ]),
};

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ref('Problem') } },
});
const json = (name: string, description = 'OK') => ({
  description,
  content: { 'application/json': { schema: ref(name) } },
});
const q = (name: string, schema: Schema, description: string) => ({ name, in: 'query', schema, description });
const p = (name: string, description: string) => ({
  name,
  in: 'path',
  required: true,
  schema: str,
  description,
});
const paging = [
  q('after', str, 'cursor: the `next` of the previous page'),
  q('limit', { type: 'integer', minimum: 1, maximum: 500 }, 'page size (default 50)'),
];
const errors = {
  '400': problem('bad input'),
  '404': problem('not found'),
  '503': problem('database unavailable, not migrated, or the statement timeout passed'),
};
const actionErrors = {
  ...errors,
  '403': problem('read-only, or the CSRF check failed'),
  '409': problem('conflict'),
};
const body = (name: string, required = true) => ({
  required,
  content: { 'application/json': { schema: ref(name) } },
});

const get = (
  summary: string,
  response: string,
  parameters: unknown[] = [],
  extra: Record<string, unknown> = {},
) => ({
  get: { summary, parameters, responses: { '200': json(response), ...errors, ...extra } },
});
const post = (
  summary: string,
  response: string,
  parameters: unknown[],
  requestBody?: unknown,
  status = '200',
) => ({
  post: {
    summary,
    parameters,
    ...(requestBody ? { requestBody } : {}),
    responses: { [status]: json(response), ...actionErrors },
  },
});
const group = p('group', 'subscription group');
const name = p('name', 'subscription name');

/** The OpenAPI document, paths relative to the server (mounted at `<base>/api`). */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'beckett admin API',
      version: '1',
      description:
        'Operator API of a beckett message store: browse streams and messages, watch subscriptions and checkpoints, act on them (every action audited). Lists are keyset pages; errors are application/problem+json.',
    },
    servers: [{ url: '/' }],
    paths: {
      '/api/summary': get(
        'Header counts: lagging, retrying, failed checkpoints, live workers, blocking transaction',
        'Summary',
      ),
      '/api/health': get(
        'es health --json (503 when unhealthy)',
        'Health',
        [q('group', str, 'only this group'), q('maxLag', int, 'unhealthy above this lag')],
        {
          '503': json('Health', 'unhealthy'),
        },
      ),
      '/api/lag': get('es lag --json snapshot', 'Lag'),
      '/api/categories': get('Categories by name (prefix search)', 'CategoryPage', [
        q('search', str, 'name prefix'),
        ...paging,
      ]),
      '/api/categories/{category}/streams': get('Streams of a category by name', 'StreamPage', [
        p('category', 'category'),
        ...paging,
      ]),
      '/api/streams/{stream}/messages': {
        ...get('A page of a stream', 'MessagePage', [
          p('stream', 'stream name (URL-encoded)'),
          q('from', int, 'first position (backward: highest)'),
          q('limit', int, 'page size'),
          q('direction', { enum: ['forward', 'backward'] }, 'default forward'),
        ]),
        ...{
          post: {
            summary: 'Append with an expected version (audited)',
            parameters: [p('stream', 'stream name')],
            requestBody: {
              required: true,
              content: {
                'application/json': {
                  schema: obj(
                    {
                      messages: arr(ref('NewMessage')),
                      expectedVersion: { anyOf: [int, { enum: ['any', 'no_stream', 'stream_exists'] }] },
                    },
                    ['expectedVersion'],
                  ),
                },
              },
            },
            responses: {
              '201': json('AppendResult', 'appended'),
              ...actionErrors,
              '409': problem('wrong expected version'),
              '422': problem('a payload failed its schema'),
            },
          },
        },
      },
      '/api/messages/{id}': get('A message with its neighbours and links', 'MessageDetail', [
        p('id', 'message id'),
      ]),
      '/api/messages': get(
        'Find messages by correlation id, causation id or global position',
        'MessageList',
        [q('correlationId', str, ''), q('causationId', str, ''), q('globalPosition', int, '')],
      ),
      '/api/log': get('The whole log (or a category), gap-safe, after a log position', 'LogPage', [
        q('after', str, 'log position <transactionId>:<globalPosition>'),
        q('limit', int, 'page size'),
        q('category', str, 'only this category'),
        q('types', str, 'comma-separated types'),
      ]),
      '/api/events': {
        get: {
          summary:
            'Server-Sent Events: event "message" (id = log position, data = Message), "caught-up" at the head, "error". Resumable with Last-Event-ID.',
          parameters: [
            q('stream', str, 'one stream'),
            q('category', str, 'one category'),
            q('types', str, 'comma-separated types'),
            q('tags', str, 'comma-separated tags (a query, with types)'),
            q('from', str, 'start, end (default) or a global position'),
            q('after', str, 'resume after this log position'),
            { name: 'Last-Event-ID', in: 'header', schema: str, description: 'resume after this event id' },
          ],
          responses: {
            '200': { description: 'event stream', content: { 'text/event-stream': { schema: str } } },
            ...errors,
          },
        },
      },
      '/api/subscriptions': get('Groups and subscriptions with lag and rate', 'Subscriptions'),
      '/api/subscriptions/{group}/{name}/pause': post('Pause a subscription', 'StatusChange', [group, name]),
      '/api/subscriptions/{group}/{name}/resume': post('Resume a subscription', 'StatusChange', [
        group,
        name,
      ]),
      '/api/subscriptions/{group}/{name}/reset': post(
        'Start a subscription over from the start or the end',
        'ResetResult',
        [group, name],
        {
          required: false,
          content: { 'application/json': { schema: obj({ to: { enum: ['start', 'end'] } }, ['to']) } },
        },
      ),
      '/api/subscriptions/{group}/{name}/forget': post(
        'Delete a subscription no config declares (unknown, run by no live worker) with its checkpoints',
        'ForgetResult',
        [group, name],
      ),
      '/api/subscriptions/{group}/{name}/replay': post('Replay a range', 'ReplayResult', [group, name], {
        required: false,
        content: {
          'application/json': {
            schema: obj(
              {
                from: { anyOf: [int, str] },
                to: { anyOf: [int, str] },
                stream: str,
                types: arr(str),
                dryRun: bool,
              },
              ['from', 'to', 'stream', 'types', 'dryRun'],
            ),
          },
        },
      }),
      '/api/checkpoints': get('Checkpoints needing attention', 'CheckpointPage', [
        q('status', { enum: ['lagging', 'retrying', 'failed', 'leased'] }, 'default: all needing attention'),
        q('group', str, ''),
        q('subscription', str, ''),
        ...paging,
      ]),
      '/api/checkpoints/{id}': get('A checkpoint with its error and history', 'CheckpointDetail', [
        p('id', 'group/subscription/stream, URL-encoded'),
      ]),
      '/api/checkpoints/retry': post(
        'Retry failing checkpoints now',
        'ChangeResult',
        [],
        body('CheckpointTarget'),
      ),
      '/api/checkpoints/skip': post(
        'Skip the failing message of checkpoints',
        'ChangeResult',
        [],
        body('CheckpointTarget'),
      ),
      '/api/checkpoints/release': post(
        'Drop the leases of checkpoints',
        'ReleaseResult',
        [],
        body('CheckpointTarget'),
      ),
      '/api/scheduled': get('Scheduled messages in delivery order', 'ScheduledPage', paging),
      '/api/scheduled/{id}/cancel': post('Cancel a scheduled message', 'Cancelled', [
        p('id', 'scheduled message id'),
      ]),
      '/api/recurring': get('Recurring messages with their next occurrences', 'Recurring'),
      '/api/recurring/{name}/send-now': post(
        'Append an occurrence now',
        'SentNow',
        [p('name', 'recurring message name')],
        undefined,
        '201',
      ),
      '/api/queues': get('Queues: ready, in flight, delayed, dead, oldest age, rate', 'QueueList'),
      '/api/queues/{queue}/jobs': {
        ...get("A queue's next jobs in the order workers take them", 'QueueJobs', [
          p('queue', 'queue name'),
          q('limit', { type: 'integer', minimum: 1, maximum: 500 }, 'default 20'),
        ]),
        ...post(
          'Enqueue jobs, in one transaction (audited)',
          'EnqueueResult',
          [p('queue', 'queue name')],
          {
            required: true,
            content: { 'application/json': { schema: obj({ jobs: arr(ref('NewJob')) }) } },
          },
          '201',
        ),
      },
      '/api/queues/{queue}/dead-letters': get(
        "A queue's dead letters, oldest first, with their errors",
        'DeadLetters',
        [p('queue', 'queue name'), q('limit', { type: 'integer', minimum: 1, maximum: 500 }, 'default 100')],
      ),
      '/api/queues/{queue}/dead-letters/redrive': post(
        'Put dead letters back on the queue, ready now (404 when none of the ids is one)',
        'RedriveResult',
        [p('queue', 'queue name')],
        {
          required: true,
          content: {
            'application/json': {
              schema: { anyOf: [obj({ ids: arr(str) }), obj({ all: { const: true } })] },
            },
          },
        },
      ),
      '/api/queues/{queue}/purge': post(
        "Delete a queue's jobs, or its dead letters; confirm must repeat the queue's name (400 otherwise)",
        'PurgeResult',
        [p('queue', 'queue name')],
        {
          required: true,
          content: {
            'application/json': { schema: obj({ confirm: str, deadLetters: bool }, ['deadLetters']) },
          },
        },
      ),
      '/api/workers': get('Workers, live and gone', 'Workers'),
      '/api/retention/preview': get('What es retention apply --dry-run would delete', 'RetentionResult'),
      '/api/audit': get('Operator actions, newest first', 'AuditPage', [
        q('checkpoint', str, 'only actions naming this checkpoint'),
        ...paging,
      ]),
      '/api/openapi.json': {
        get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
    },
    components: { schemas },
  };
}
