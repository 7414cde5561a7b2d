import { describe, expect, it } from 'vitest'
import { formatDateTime } from './format'
import { addDays, zoneFromCycleStart, zonedDate, zonedMidnight } from './time'

describe('company timezone', () => {
  it('finds midnight of a Jakarta day in UTC', () => {
    expect(zonedMidnight('2026-12-01', 'Asia/Jakarta')).toBe('2026-11-30T17:00:00.000Z')
  })

  it('handles a zone with daylight saving on the day it changes', () => {
    expect(zonedMidnight('2026-03-29', 'Europe/Berlin')).toBe('2026-03-28T23:00:00.000Z')
    expect(zonedMidnight('2026-03-30', 'Europe/Berlin')).toBe('2026-03-29T22:00:00.000Z')
  })

  it('adds calendar days across month ends', () => {
    expect(addDays('2026-11-30', 1)).toBe('2026-12-01')
    expect(addDays('2026-03-01', -1)).toBe('2026-02-28')
  })

  it('tells the calendar date of an instant in the zone', () => {
    expect(zonedDate('2026-11-30T17:30:00Z', 'Asia/Jakarta')).toBe('2026-12-01')
    expect(zonedDate('2026-11-30T17:30:00Z', 'UTC')).toBe('2026-11-30')
  })

  it('derives a fixed-offset zone from a cycle that starts at local midnight', () => {
    expect(zoneFromCycleStart('2026-11-30T17:00:00+00:00')).toBe('Etc/GMT-7')
    expect(zoneFromCycleStart('2026-12-01T00:00:00+00:00')).toBe('UTC')
    expect(zoneFromCycleStart('2026-12-01T05:00:00+00:00')).toBe('Etc/GMT+5')
    expect(zoneFromCycleStart('2026-11-30T18:30:00+00:00')).toBe('Asia/Jakarta')
    expect(zoneFromCycleStart(undefined)).toBe('Asia/Jakarta')
  })

  it('shows times in the company zone, not the browser one', () => {
    expect(formatDateTime('2026-11-30T17:00:00Z', 'Asia/Jakarta')).toBe('1 Dec, 00:00')
    expect(formatDateTime('2026-11-30T17:00:00Z', 'UTC')).toBe('30 Nov, 17:00')
  })
})
