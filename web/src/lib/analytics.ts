/** The analytics seam: components report through a sink; the default one posts to the API's allow-listed endpoint. */

import type { InjectionKey } from 'vue'
import type { ApiClient } from '../api/client'
import type { AnalyticsEventName, AnalyticsProperties } from '../api/types'

export interface AnalyticsSink {
  track<N extends AnalyticsEventName>(name: N, properties: AnalyticsProperties[N]): void
}

export const ANALYTICS: InjectionKey<AnalyticsSink> = Symbol('analytics')

/** POST /api/core/v1/analytics/events; a failure is dropped: analytics never breaks the page. */
export function apiSink(client: ApiClient): AnalyticsSink {
  return {
    track(name, properties) {
      client.sendAnalytics(name, properties).catch(() => undefined)
    },
  }
}

/** A sink that keeps what it is sent (tests, and hosts that forward events themselves). */
export function memorySink(): AnalyticsSink & { events: { name: AnalyticsEventName; properties: unknown }[] } {
  const events: { name: AnalyticsEventName; properties: unknown }[] = []
  return {
    events,
    track(name, properties) {
      events.push({ name, properties })
    },
  }
}
