"""Every Lua script memq runs on Redis, each one atomic on the server: a compare-and-set
and everything that must change with it happen together or not at all.

The comment above each script names its KEYS and ARGV (in order) and what it returns. The
store modules register the scripts they run (`client.register_script`): EVALSHA, with the
script sent again only when the server does not know it yet.
"""

# ---------------------------------------------------------------------------------- jobs

# KEYS: job hash, tenant index, global active, tenant active, idempotency key.
# ARGV: status, record JSON, created ts, job id, active member, quota (0: none),
#       safety TTL seconds of the unfinished record, summary JSON,
#       body hash ("" when no Idempotency-Key), idempotency TTL s, index retention s.
# Returns {"created", id}, {"quota", ""}, {"same", original id} or {"conflict", original id}.
CREATE = """
if ARGV[9] ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    local sep = string.find(seen, '|', 1, true)
    local original = string.sub(seen, 1, sep - 1)
    if string.sub(seen, sep + 1) == ARGV[9] then return {'same', original} end
    return {'conflict', original}
  end
end
if tonumber(ARGV[6]) > 0 and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  return {'quota', ''}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'record', ARGV[2], 'summary', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[11])))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[5], ARGV[4] .. '|' .. ARGV[9], 'EX', ARGV[10])
end
return {'created', ARGV[4]}
"""

# KEYS: tenant index, global active zset, group hash, then one job hash per job.
# ARGV: created ts, safety TTL s, index retention s, then per job: id, active member,
# record JSON, summary JSON, group value. Creates the jobs that do not exist yet (a retried
# bulk creation makes only what is missing); returns the ids created.
CREATE_MANY = """
local created = {}
for i = 4, #KEYS do
  local base = 3 + (i - 4) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'status', 'queued', 'record', ARGV[base + 3],
               'summary', ARGV[base + 4])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[base + 1])
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[base + 2])
    redis.call('HSET', KEYS[3], ARGV[base + 1], ARGV[base + 5])
    created[#created + 1] = ARGV[base + 1]
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[3])))
return created
"""

# KEYS: job hash, events stream, progress hash, lease, global active zset, tenant active zset.
# ARGV: JSON list of allowed current statuses, new status, new record JSON,
#       TTL seconds to set when the new status is terminal (0: none), events maxlen,
#       worker id (start only, "" otherwise), lease TTL ms, active member, job id, summary.
# Returns 1 when applied, 0 when the current status is not allowed, -1 when unknown,
# -2 when another worker holds the job's lease (start only).
TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = cjson.decode(ARGV[1])
for _, s in ipairs(allowed) do
  if s == current then
    if ARGV[6] ~= '' then
      local holder = redis.call('GET', KEYS[4])
      if holder and holder ~= ARGV[6] then return -2 end
      redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
    end
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'record', ARGV[3], 'summary', ARGV[10])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
               'event', 'status', 'status', ARGV[2])
    local ttl = tonumber(ARGV[4])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[1], ttl)
      redis.call('EXPIRE', KEYS[2], ttl)
      redis.call('DEL', KEYS[3], KEYS[4])
      redis.call('ZREM', KEYS[5], ARGV[8])
      redis.call('ZREM', KEYS[6], ARGV[9])
    end
    return 1
  end
end
return 0
"""

# KEYS: job hash, events stream. ARGV: record JSON, summary JSON.
# A cancelled job's partial output is attached once; returns 1 when attached.
ATTACH_PARTIAL = """
if redis.call('HGET', KEYS[1], 'status') ~= 'cancelled' then return 0 end
if redis.call('HSETNX', KEYS[1], 'partial', '1') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'summary', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 20000, '*', 'event', 'partial')
return 1
"""

# -------------------------------------------------------------------------------- leases

# KEYS: lease (a job's, a batch's or the reconciler lock). ARGV: holder id, TTL ms, mode
# ("take": only when free or ours; "renew": only when ours; "release": delete when ours).
# Returns 1 when done.
LEASE = """
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
  return 0
end
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[3] == 'renew' and not holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# ------------------------------------------------------------------------------ sessions

# KEYS: session hash. ARGV: "job:{id}" field, count. Returns the job's first turn number.
RESERVE_TURNS = """
local first = redis.call('HGET', KEYS[1], ARGV[1])
if first then return tonumber(first) end
local after = redis.call('HINCRBY', KEYS[1], 'next_turn', tonumber(ARGV[2]))
first = after - tonumber(ARGV[2]) + 1
redis.call('HSET', KEYS[1], ARGV[1], first)
return first
"""

# KEYS: session hash. ARGV: claim TTL seconds. The claim is a timestamp field.
CLAIM_SUMMARY = """
local now = redis.call('TIME')[1]
local held = redis.call('HGET', KEYS[1], 'summarizing')
if held and tonumber(held) > tonumber(now) then return 0 end
redis.call('HSET', KEYS[1], 'summarizing', tonumber(now) + tonumber(ARGV[1]))
return 1
"""

# KEYS: session hash. ARGV: turn. Moves summarized_through forward and drops the claim.
ADVANCE_SUMMARY = """
local current = tonumber(redis.call('HGET', KEYS[1], 'summarized_through') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'summarized_through', ARGV[1])
end
redis.call('HDEL', KEYS[1], 'summarizing')
return 1
"""

# ------------------------------------------------------------------------------ webhooks

# KEYS: job hash. ARGV: WebhookDelivery JSON. Records a pending delivery once per job, and
# only on a record that still exists (HSETNX alone would recreate an expired one, forever).
WEBHOOK_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'webhook', ARGV[1])
"""

# KEYS: job hash. ARGV: the webhook field as read, its new value. A compare-and-set of the
# field alone: 1 when written, 0 when it changed since it was read, -1 when gone.
WEBHOOK_UPDATE = """
local current = redis.call('HGET', KEYS[1], 'webhook')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2])
return 1
"""

# KEYS: secret hash. ARGV: mode ("get": create when missing; "rotate"), new secret, now
# (ISO 8601), previous_until (ISO 8601, rotate only). Returns the hash's fields.
WEBHOOK_SECRET = """
if ARGV[1] == 'rotate' then
  local current = redis.call('HGET', KEYS[1], 'secret')
  if current then
    redis.call('HSET', KEYS[1], 'previous', current, 'previous_until', ARGV[4])
  end
  redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'created_at', ARGV[3])
elseif redis.call('HSETNX', KEYS[1], 'secret', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[3])
end
return redis.call('HMGET', KEYS[1], 'secret', 'created_at', 'previous', 'previous_until')
"""

# ------------------------------------------------------------------------------ batches

# Moves a batch whose jobs are all created and whose lines are all written to finalizing.
_FINALIZE_IF_DONE = """
local function finalize_if_done(batch, pending, now)
  local status = redis.call('HGET', batch, 'status')
  if redis.call('HGET', batch, 'enqueued') == '1'
     and (status == 'in_progress' or status == 'cancelling')
     and redis.call('HLEN', pending) == 0 then
    redis.call('HSET', batch, 'status', 'finalizing')
    redis.call('HSETNX', batch, 'at:finalizing', now)
    return 'finalizing'
  end
  return status
end
"""

# KEYS: batch, lines, pending. ARGV: job id ("" for a line without a job), line number
# (used when the job id is ""), kind, line JSON, input tokens, output tokens, now.
# Returns {1 when written (0: written before, not one of the batch's jobs, or the batch is
# gone), the batch's status after it}.
BATCH_WRITE_LINE = (
    _FINALIZE_IF_DONE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local number = ARGV[2]
if ARGV[1] ~= '' then
  number = redis.call('HGET', KEYS[3], ARGV[1])
  if not number then return {0, redis.call('HGET', KEYS[1], 'status')} end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('HSETNX', KEYS[2], number, ARGV[3] .. ARGV[4]) == 0 then
  return {0, finalize_if_done(KEYS[1], KEYS[3], ARGV[7])}
end
local size = string.len(ARGV[4]) + 1
if ARGV[3] == 'o' then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
  redis.call('HINCRBY', KEYS[1], 'output_bytes', size)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
  redis.call('HINCRBY', KEYS[1], 'error_bytes', size)
end
redis.call('HINCRBY', KEYS[1], 'input_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'output_tokens', ARGV[6])
return {1, finalize_if_done(KEYS[1], KEYS[3], ARGV[7])}
"""
)

# KEYS: batch, pending. ARGV: now. Every job is created: validating → in_progress.
BATCH_ENQUEUED = (
    _FINALIZE_IF_DONE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
redis.call('HSET', KEYS[1], 'enqueued', '1')
if redis.call('HGET', KEYS[1], 'status') == 'validating' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress')
  redis.call('HSETNX', KEYS[1], 'at:in_progress', ARGV[1])
end
return finalize_if_done(KEYS[1], KEYS[2], ARGV[1])
"""
)

# KEYS: batch, pending. ARGV: now, outcome ("cancelled" or "expired"). A cancel moves a
# validating or in_progress batch to cancelling; an expiry only records its outcome.
# Returns the status after it ("" when the batch is gone).
BATCH_END_EARLY = (
    _FINALIZE_IF_DONE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status ~= 'validating' and status ~= 'in_progress' then return status end
redis.call('HSETNX', KEYS[1], 'outcome', ARGV[2])
if ARGV[2] == 'cancelled' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling')
  redis.call('HSETNX', KEYS[1], 'at:cancelling', ARGV[1])
end
return finalize_if_done(KEYS[1], KEYS[2], ARGV[1])
"""
)

# KEYS: batch. ARGV: allowed statuses (JSON), new status, now. Returns 1 when moved.
BATCH_MOVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if s == status then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    redis.call('HSETNX', KEYS[1], 'at:' .. ARGV[2], ARGV[3])
    return 1
  end
end
return 0
"""

# ------------------------------------------------------------------------------ adapters

# KEYS: adapter hash, tenant's adapter zset. ARGV: job id, now (s), name.
# Returns the version this job makes: the one it was given before, or the next number.
ADAPTER_RESERVE_VERSION = """
local given = redis.call('HGET', KEYS[1], 'job:' .. ARGV[1])
if given then return tonumber(given) end
local version = redis.call('HINCRBY', KEYS[1], 'next', 1)
redis.call('HSET', KEYS[1], 'job:' .. ARGV[1], version)
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3])
return version
"""
