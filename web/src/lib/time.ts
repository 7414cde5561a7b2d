/** Times in the company timezone: IANA zones through Intl, instants as integer milliseconds. */

export const DEFAULT_TIMEZONE = 'Asia/Jakarta'

const partsCache = new Map<string, Intl.DateTimeFormat>()

function zoneParts(timeZone: string): Intl.DateTimeFormat {
  let format = partsCache.get(timeZone)
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    partsCache.set(timeZone, format)
  }
  return format
}

/** The zone's offset from UTC at an instant, in milliseconds. */
export function offsetMs(instantMs: number, timeZone: string): number {
  const parts = zoneParts(timeZone).formatToParts(new Date(instantMs))
  const get = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)?.value ?? 0)
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'))
  return wall - Math.floor(instantMs / 1000) * 1000
}

/** The instant (ISO 8601, UTC) of midnight starting `date` (YYYY-MM-DD) in `timeZone`. */
export function zonedMidnight(date: string, timeZone: string): string {
  const [year, month, day] = date.split('-').map(Number)
  if (!year || !month || !day) throw new RangeError(`not a date: ${date}`)
  const wall = Date.UTC(year, month - 1, day)
  // Twice: the offset at the first guess can differ from the offset at the answer across a DST change.
  let instant = wall - offsetMs(wall, timeZone)
  instant = wall - offsetMs(instant, timeZone)
  return new Date(instant).toISOString()
}

/** `date` plus `days` calendar days (YYYY-MM-DD). */
export function addDays(date: string, days: number): string {
  const [year, month, day] = date.split('-').map(Number)
  return new Date(Date.UTC(year ?? 1970, (month ?? 1) - 1, (day ?? 1) + days)).toISOString().slice(0, 10)
}

/** The calendar date (YYYY-MM-DD) of an instant in `timeZone`. */
export function zonedDate(iso: string, timeZone: string): string {
  const parts = zoneParts(timeZone).formatToParts(new Date(iso))
  const get = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? ''
  return `${get('year')}-${get('month')}-${get('day')}`
}

/**
 * A zone for an API that does not say: the cycle starts at midnight in the company zone, so its UTC offset
 * names a fixed-offset zone (`Etc/GMT-7` is UTC+7). Whole hours only; otherwise the SPEC's default.
 */
export function zoneFromCycleStart(startsAt: string | undefined): string {
  if (!startsAt) return DEFAULT_TIMEZONE
  const instant = Date.parse(startsAt)
  if (Number.isNaN(instant)) return DEFAULT_TIMEZONE
  const msIntoUtcDay = ((instant % 86_400_000) + 86_400_000) % 86_400_000
  if (msIntoUtcDay % 3_600_000 !== 0) return DEFAULT_TIMEZONE
  let hours = -msIntoUtcDay / 3_600_000 // midnight local = UTC - offset
  if (hours <= -12) hours += 24
  if (hours === 0) return 'UTC'
  return `Etc/GMT${hours > 0 ? '-' : '+'}${Math.abs(hours)}`
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone })
    return true
  } catch {
    return false
  }
}
