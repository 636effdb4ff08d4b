"""The stylesheet of the smartphone preview: one ``<style>`` block, every rule scoped to ``.lo-preview``.

Scoped so that the fragment can sit inside another page (the Airflow UI) without changing it. The
sizes follow a standard smartphone screen: 375 CSS pixels wide, LINE's chat colours.
"""

from __future__ import annotations

SCREEN_WIDTH = 375
"""Width of the phone's screen in CSS pixels (a standard smartphone)."""

IMAGEMAP_WIDTH = 260
"""Width an imagemap is drawn at in the chat, in CSS pixels; its height follows ``base_size``."""

STYLE = """
.lo-preview { font-family: -apple-system, "Helvetica Neue", "Hiragino Sans", "Noto Sans CJK JP",
  system-ui, sans-serif; color: #1f2328; display: flex; flex-wrap: wrap; gap: 24px;
  align-items: flex-start; padding: 16px; }
.lo-preview * { box-sizing: border-box; }
.lo-preview .lo-phone { width: 395px; border: 10px solid #1b1b1d; border-radius: 38px;
  background: #1b1b1d; box-shadow: 0 6px 24px rgba(0,0,0,.25); overflow: hidden; flex: none; }
.lo-preview .lo-screen { width: 375px; min-height: 640px; background: #8cabd8; border-radius: 28px;
  overflow: hidden; display: flex; flex-direction: column; }
.lo-preview .lo-statusbar { height: 22px; background: #f7f7f7; font-size: 11px; font-weight: 600;
  display: flex; justify-content: space-between; padding: 4px 22px 0; color: #111; }
.lo-preview .lo-chat-header { background: #f7f7f7; border-bottom: 1px solid #d9d9d9; height: 46px;
  display: flex; align-items: center; padding: 0 12px; gap: 10px; }
.lo-preview .lo-back { font-size: 26px; line-height: 1; color: #111; }
.lo-preview .lo-chat-title { font-weight: 700; font-size: 16px; color: #111; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.lo-preview .lo-official { color: #06c755; font-size: 13px; }
.lo-preview .lo-chat { flex: 1; padding: 10px 10px 18px; }
.lo-preview .lo-day { text-align: center; margin: 4px 0 12px; }
.lo-preview .lo-day span { background: rgba(0,0,0,.18); color: #fff; font-size: 11px;
  border-radius: 10px; padding: 2px 10px; }
.lo-preview .lo-row { display: flex; align-items: flex-start; gap: 8px; margin: 0 0 10px; }
.lo-preview .lo-avatar { width: 36px; height: 36px; border-radius: 50%; background: #06c755;
  color: #fff; font-weight: 700; font-size: 16px; display: flex; align-items: center;
  justify-content: center; flex: none; }
.lo-preview .lo-avatar.lo-hidden { visibility: hidden; }
.lo-preview .lo-message { display: flex; flex-direction: column; max-width: 270px; }
.lo-preview .lo-sender { font-size: 11px; color: #2b3a4f; margin: 0 0 3px 2px; }
.lo-preview .lo-bubble { background: #fff; border-radius: 18px; padding: 8px 12px; font-size: 15px;
  line-height: 1.4; white-space: pre-wrap; overflow-wrap: anywhere; }
.lo-preview .lo-bubble a { color: #2b6cc4; }
.lo-preview .lo-emoji { display: inline-block; background: #fff3c4; border: 1px solid #e0b400;
  border-radius: 6px; font-size: 10px; line-height: 14px; padding: 0 3px; vertical-align: 1px;
  white-space: nowrap; color: #5c4700; }
.lo-preview .lo-broken { background: #fff; border: 2px dashed #cf222e; border-radius: 12px;
  padding: 8px 12px; font-size: 13px; color: #cf222e; }
.lo-preview .lo-imagemap { position: relative; overflow: hidden; border-radius: 14px;
  background: repeating-linear-gradient(45deg, #e9eef5 0 12px, #dfe6ef 12px 24px); }
.lo-preview .lo-placeholder { position: absolute; inset: 0; display: flex; align-items: center;
  justify-content: center; color: #8c959f; font-size: 11px; }
.lo-preview .lo-image { position: absolute; inset: 0; background-size: 100% 100%; }
.lo-preview .lo-area { position: absolute; border: 2px solid rgba(6,199,85,.95);
  background: rgba(6,199,85,.10); text-decoration: none; color: #fff; overflow: hidden; }
.lo-preview .lo-area.lo-message-area { border-color: rgba(43,108,196,.95);
  background: rgba(43,108,196,.10); }
.lo-preview .lo-area.lo-video { border: 2px dashed #cf222e; background: rgba(207,34,46,.10); }
.lo-preview .lo-area-label { position: absolute; left: 3px; top: 3px; right: 3px;
  background: rgba(0,0,0,.66); border-radius: 6px; padding: 2px 5px; font-size: 10px;
  line-height: 1.3; overflow-wrap: anywhere; }
.lo-preview .lo-area-label b { font-size: 11px; }
.lo-preview .lo-action { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; }
.lo-preview .lo-play { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%);
  width: 40px; height: 40px; border-radius: 50%; background: rgba(0,0,0,.55); color: #fff;
  font-size: 18px; display: flex; align-items: center; justify-content: center; }
.lo-preview .lo-caption { font-size: 10px; color: #2b3a4f; margin: 3px 0 0 2px; max-width: 260px;
  overflow-wrap: anywhere; }
.lo-preview .lo-side { flex: 1 1 360px; min-width: 300px; max-width: 640px; font-size: 14px; }
.lo-preview h2 { font-size: 18px; margin: 0 0 4px; }
.lo-preview h3 { font-size: 15px; margin: 18px 0 6px; border-bottom: 1px solid #d0d7de;
  padding-bottom: 3px; }
.lo-preview .lo-meta { color: #57606a; margin: 0; }
.lo-preview .lo-badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
  background: #ddf4ff; color: #0969da; }
.lo-preview .lo-badge.lo-draft { background: #fff8c5; color: #7d4e00; }
.lo-preview ol, .lo-preview ul { padding-left: 20px; margin: 4px 0; }
.lo-preview li { margin: 3px 0; overflow-wrap: anywhere; }
.lo-preview code { font-size: 12px; background: #f6f8fa; border-radius: 4px; padding: 0 3px; }
.lo-preview .lo-tab { margin: 8px 0 0; font-weight: 600; }
.lo-preview .lo-ok { color: #1a7f37; font-weight: 400; }
.lo-preview .lo-count { color: #cf222e; font-weight: 400; }
.lo-preview .lo-problem { color: #1f2328; }
"""
