"""livefill for Krita: fill selections, expand the canvas and preview img2img live, from prompts,
with a local livefill daemon (Stable Diffusion + LCM on ONNX Runtime).

Module map: ``docker`` (widgets) and ``extension`` (menu actions) call ``controller`` (job
sequencing, live mode), which uses ``krita_document`` (the only code touching Krita's API),
``connection`` (non-blocking daemon link over the shared ``livefill_client``), and the pure
``logic`` / ``pixels`` modules. ``livefill_protocol``, ``livefill_client`` and
``livefill_plugin_core`` are the codec, transport and plugin core shared with the GIMP plug-in
(rectangles, settings, requests, context, layer names, error texts, finding the daemon), copied
here by ``livefill install-plugin krita``.
"""

try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita
except ImportError:  # imported outside Krita (plain-Python tests): register nothing
    Krita = None

if Krita is not None:
    from .docker import DOCKER_ID, LivefillDocker
    from .extension import LivefillExtension

    _app = Krita.instance()
    _app.addExtension(LivefillExtension(_app))
    _app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, LivefillDocker))
