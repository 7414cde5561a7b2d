import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../api/client'
import type { SpendCap, WabaSummary } from '../api/types'
import { roleOf } from '../lib/token'
import SpendingCaps from './SpendingCaps.vue'

const PROMO: WabaSummary = {
  wabaId: '114578203396121',
  name: 'Promo',
  spentThisCycle: 9_000_000,
  spendCap: { amount: 10_000_000, categories: ['marketing'], warnPercent: 80 },
  capSpent: 9_000_000,
  dailySpend: 0,
  balance: null,
}
const SALES: WabaSummary = { wabaId: '102290129340398', name: 'Sales', spentThisCycle: 0, spendCap: null, capSpent: null, dailySpend: 0, balance: null }

function mounted(options: { canEdit?: boolean; save?: (id: string, cap: SpendCap | null) => Promise<void> } = {}) {
  return mount(SpendingCaps, {
    props: {
      state: 'success',
      wabas: [PROMO, SALES],
      currency: 'IDR',
      canEdit: options.canEdit ?? true,
      save: options.save ?? (() => Promise.resolve()),
    },
  })
}

describe('SpendingCaps', () => {
  it('shows each WABA spend against its cap as a bar and in words, and the warning past warn_percent', () => {
    const wrapper = mounted()
    const bar = wrapper.get('progress')
    expect(bar.attributes('aria-label')).toBe('Promo: spend against its cap this cycle')
    expect(bar.attributes('max')).toBe('10000000')
    expect(bar.attributes('value')).toBe('9000000')
    // Intl puts a no-break space after "Rp".
    const promo = wrapper.get('[data-waba="114578203396121"]').text().replace(/\u00a0/g, ' ')
    expect(promo).toContain('Rp 90.000 of Rp 100.000 this cycle')
    expect(promo).toContain('Marketing only')
    expect(promo).toContain('90% used')
    expect(promo).toContain('Past the 80% warning mark.')
    expect(wrapper.get('[data-waba="102290129340398"]').text()).toContain('No cap')
  })

  it('a reached cap says so in words', () => {
    const wrapper = mount(SpendingCaps, {
      props: { state: 'success', wabas: [{ ...PROMO, capSpent: 10_000_000 }], currency: 'IDR', canEdit: false, save: () => Promise.resolve() },
    })
    expect(wrapper.text()).toContain('Cap reached')
  })

  it('is read-only for supervisors: no buttons', () => {
    const wrapper = mounted({ canEdit: false })
    expect(wrapper.findAll('button')).toHaveLength(0)
    expect(wrapper.text()).toContain('Read only')
  })

  it('sets a cap only after the confirmation, in exact minor units', async () => {
    const saved: [string, SpendCap | null][] = []
    const wrapper = mounted({ save: (id, cap) => (saved.push([id, cap]), Promise.resolve()) })
    await wrapper.get('button[aria-label="Set the spending cap of Sales"]').trigger('click')
    await wrapper.get('input[inputmode="decimal"]').setValue('1500,25')
    await wrapper.get('input[value="marketing"]').setValue(true)
    await wrapper.get('form').trigger('submit')
    expect(saved).toEqual([])
    expect(wrapper.get('.cap-confirm').text().replace(/\u00a0/g, ' ')).toContain('Cap Sales at Rp 1.500,25 per cycle (Marketing only)?')
    await wrapper.get('.cap-confirm .button-primary').trigger('click')
    await flushPromises()
    expect(saved).toEqual([['102290129340398', { amount: 150_025, categories: ['marketing'], warnPercent: 80 }]])
    expect(wrapper.find('.cap-confirm').exists()).toBe(false)
  })

  it('refuses an amount that is not exact before asking anything', async () => {
    const wrapper = mounted()
    await wrapper.get('button[aria-label="Set the spending cap of Sales"]').trigger('click')
    await wrapper.get('input[inputmode="decimal"]').setValue('12,345')
    await wrapper.get('form').trigger('submit')
    expect(wrapper.get('.field-note').text()).toContain('Enter the cap as digits')
    expect(wrapper.find('.cap-confirm').exists()).toBe(false)
  })

  it('removes a cap after the confirmation; cancelling changes nothing', async () => {
    const saved: [string, SpendCap | null][] = []
    const wrapper = mounted({ save: (id, cap) => (saved.push([id, cap]), Promise.resolve()) })
    await wrapper.get('button[aria-label="Remove the spending cap of Promo"]').trigger('click')
    expect(wrapper.get('.cap-confirm').text()).toContain('Remove the cap of Promo?')
    await wrapper.get('.cap-confirm button:nth-of-type(2)').trigger('click')
    expect(saved).toEqual([])
    await wrapper.get('button[aria-label="Remove the spending cap of Promo"]').trigger('click')
    await wrapper.get('.cap-confirm .button-primary').trigger('click')
    await flushPromises()
    expect(saved).toEqual([['114578203396121', null]])
  })

  it('a refused change is shown as an alert, and the form stays open', async () => {
    const wrapper = mounted({ save: () => Promise.reject(new ApiError(403, 'forbidden', 'role supervisor may not do this')) })
    await wrapper.get('button[aria-label="Change the spending cap of Promo"]').trigger('click')
    await wrapper.get('form').trigger('submit')
    await wrapper.get('.cap-confirm .button-primary').trigger('click')
    await flushPromises()
    expect(wrapper.get('[role="alert"]').text()).toBe('The cap was not changed: your role may not see this.')
    expect(wrapper.find('form').exists()).toBe(true)
  })

  it('has the loading, error and empty states', async () => {
    const props = { wabas: [], currency: 'IDR', canEdit: true, save: () => Promise.resolve() }
    expect(mount(SpendingCaps, { props: { ...props, state: 'loading' } }).find('.skeleton').exists()).toBe(true)
    const failed = mount(SpendingCaps, { props: { ...props, state: 'error', errorMessage: 'boom.' } })
    expect(failed.text()).toContain("We couldn't load the spending caps. boom.")
    await failed.get('button').trigger('click')
    expect(failed.emitted('retry')).toHaveLength(1)
    expect(mount(SpendingCaps, { props: { ...props, state: 'empty' } }).text()).toContain('No WABAs yet')
  })
})

describe('roleOf', () => {
  it('reads the role claim of a JWT, and nothing from anything else', () => {
    const payload = btoa(JSON.stringify({ company_id: 1, role: 'supervisor' })).replace(/=+$/, '')
    expect(roleOf(`h.${payload}.s`)).toBe('supervisor')
    expect(roleOf('not-a-token')).toBeNull()
    expect(roleOf(null)).toBeNull()
  })
})
