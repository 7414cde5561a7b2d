import { mount } from '@vue/test-utils'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { info } from '../test/fixtures'
import SharedBalanceTooltip from './SharedBalanceTooltip.vue'

function mountTooltip() {
  const billing = info()
  return mount(SharedBalanceTooltip, {
    props: { balance: billing.balance, wabas: billing.wabas, currency: 'IDR', timeZone: 'Asia/Jakarta' },
    attachTo: document.body,
  })
}

describe('SharedBalanceTooltip', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => {
    vi.useRealTimers()
    document.body.innerHTML = ''
  })

  it('is a button named for the balance that points at its tooltip, closed at first', () => {
    const wrapper = mountTooltip()
    const button = wrapper.get('button')
    const tooltip = wrapper.get('[role="tooltip"]')
    expect(button.attributes('aria-label')).toContain('balance')
    expect(button.attributes('aria-describedby')).toBe(tooltip.attributes('id'))
    expect(tooltip.attributes('hidden')).toBeDefined()
  })

  it('lists the buckets, the WABAs that share the pool and when the allowance resets', () => {
    const text = mountTooltip().get('[role="tooltip"]').text().replace(/\u00a0/g, ' ')
    expect(text).toContain('Rp 123.316 of Rp 2.000.000')
    expect(text).toContain('Rp 500.000')
    expect(text).toContain('Rp 0 of Rp 1.000.000')
    expect(text).toContain('Sales')
    expect(text).toContain('Promo')
    expect(text).toContain('Allowance resets 19 Dec, 00:00')
  })

  it('opens on focus and closes on Escape, one opened event', async () => {
    const wrapper = mountTooltip()
    await wrapper.get('button').trigger('focus')
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeUndefined()
    await wrapper.get('button').trigger('keydown', { key: 'Escape' })
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeDefined()
    expect(wrapper.emitted('opened')).toEqual([['focus']])
    expect(wrapper.emitted('closed')).toHaveLength(1)
  })

  it('opens on hover only after 150 ms and closes when the pointer leaves', async () => {
    const wrapper = mountTooltip()
    await wrapper.get('button').trigger('pointerenter')
    vi.advanceTimersByTime(149)
    await wrapper.vm.$nextTick()
    expect(wrapper.emitted('opened')).toBeUndefined()
    vi.advanceTimersByTime(1)
    await wrapper.vm.$nextTick()
    expect(wrapper.emitted('opened')).toEqual([['hover']])
    await wrapper.get('button').trigger('pointerleave')
    vi.advanceTimersByTime(120)
    await wrapper.vm.$nextTick()
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeDefined()
  })

  it('the pointer can move from the button onto the tooltip without closing it', async () => {
    const wrapper = mountTooltip()
    await wrapper.get('button').trigger('pointerenter')
    vi.advanceTimersByTime(150)
    await wrapper.get('button').trigger('pointerleave')
    vi.advanceTimersByTime(60)
    await wrapper.get('[role="tooltip"]').trigger('pointerenter')
    vi.advanceTimersByTime(500)
    await wrapper.vm.$nextTick()
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeUndefined()
    expect(wrapper.emitted('opened')).toEqual([['hover']])
  })

  it('a pointer that leaves before the delay opens nothing', async () => {
    const wrapper = mountTooltip()
    await wrapper.get('button').trigger('pointerenter')
    await wrapper.get('button').trigger('pointerleave')
    vi.advanceTimersByTime(500)
    expect(wrapper.emitted('opened')).toBeUndefined()
  })

  it('opens on click as "click" (not "focus"), stays while the pointer leaves, and a second click closes it', async () => {
    const wrapper = mountTooltip()
    const button = wrapper.get('button')
    await button.trigger('pointerenter')
    await button.trigger('pointerdown')
    await button.trigger('focus')
    await button.trigger('click')
    await button.trigger('pointerleave')
    vi.advanceTimersByTime(500)
    expect(wrapper.emitted('opened')).toEqual([['click']])
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeUndefined()
    await button.trigger('click')
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeDefined()
  })

  it('a click on a tooltip that hover opened pins it without a second event', async () => {
    const wrapper = mountTooltip()
    const button = wrapper.get('button')
    await button.trigger('pointerenter')
    vi.advanceTimersByTime(200)
    await button.trigger('pointerdown')
    await button.trigger('click')
    expect(wrapper.emitted('opened')).toEqual([['hover']])
  })

  it('closes when focus moves elsewhere, and each new opening is one more event', async () => {
    const wrapper = mountTooltip()
    const button = wrapper.get('button')
    await button.trigger('focus')
    await wrapper.get('.tip').trigger('focusout', { relatedTarget: document.body })
    expect(wrapper.get('[role="tooltip"]').attributes('hidden')).toBeDefined()
    await button.trigger('focus')
    expect(wrapper.emitted('opened')).toEqual([['focus'], ['focus']])
  })
})
