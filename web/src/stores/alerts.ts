/** Alerts store: the company's own balance alerts and auto-recharge setting (GET|PUT balance_alerts). */

import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { ApiError } from '../api/client'
import { apiClient } from '../api/instance'
import type { AlertSettings } from '../api/types'
import { type SurfaceState, describeError } from '../lib/state'

export type SaveState = 'idle' | 'saving' | 'saved' | 'error'

export const useAlertsStore = defineStore('alerts', () => {
  const settings = shallowRef<AlertSettings | null>(null)
  const status = ref<'idle' | 'loading' | 'ready' | 'error'>('idle')
  const error = ref<string | null>(null)
  /** The role may not read the settings (agents, members): the page leaves the panel out. */
  const forbidden = ref(false)
  const saveState = ref<SaveState>('idle')
  const saveError = ref<string | null>(null)

  async function load(): Promise<void> {
    status.value = 'loading'
    try {
      settings.value = await apiClient().balanceAlerts()
      error.value = null
      status.value = 'ready'
    } catch (failure) {
      forbidden.value = failure instanceof ApiError && failure.status === 403
      error.value = describeError(failure)
      status.value = 'error'
    }
  }

  /** Save the alerts and auto-recharge; on success the answer (what the API now holds) is shown. */
  async function save(next: Pick<AlertSettings, 'alerts' | 'autoRecharge'>): Promise<boolean> {
    saveState.value = 'saving'
    try {
      settings.value = await apiClient().saveBalanceAlerts(next)
      saveError.value = null
      saveState.value = 'saved'
      return true
    } catch (failure) {
      saveError.value = describeError(failure)
      saveState.value = 'error'
      return false
    }
  }

  const state = computed<SurfaceState>(() => {
    if (status.value === 'idle' || (status.value === 'loading' && !settings.value)) return 'loading'
    if (status.value === 'error') return settings.value ? 'partial' : 'error'
    const current = settings.value
    if (!current) return 'loading'
    return !current.alerts.length && !current.autoRecharge ? 'empty' : 'success'
  })

  return { settings, error, forbidden, state, saveState, saveError, load, save }
})
